// The elementwise part of a weighted SwiGLU expert (Shazeer 2020, eq. 6; DeepSeekMoE eq. 9's g_{i,t} · FFN_i),
// row by row in float32, forward and backward, for the CPU MoE kernels:
//
//   forward    h_w = w · silu(g) · u                 silu(v) = v / (1 + e^−v)
//   backward   given ∂L/∂h_w = d:
//              ∂L/∂w = Σ_j d_j · silu(g_j) · u_j      (the combine weight's gradient, one number per row)
//              ∂L/∂u = w · d · silu(g)
//              ∂L/∂g = w · d · u · σ(g) · (1 + g · (1 − σ(g)))     (silu'(v) = σ(v) (1 + v (1 − σ(v))), σ(v) = 1 / (1 + e^−v))
//
// A row holds gate and up side by side, gu = [g | u] (2F floats, the fused gate+up GEMM's output), and the backward
// writes [∂g | ∂u] in the same layout, so the gate and up weight gradients are one GEMM. e^x is Core/VectorMath.Exp
// (within 2 ulps); 16 lanes at a time, a width that is not a multiple of 16 runs its last lanes through a padded
// buffer with the same math. Vector512 is emulated (exactly, lane by lane) where the CPU lacks AVX-512.
// Shapes: F expert width; a row is one (token, expert) pair.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using WhaleTech.Core;

namespace WhaleTech.Moe;

internal static unsafe class SwiGluRows
{
    /// <summary>h[j] = silu(gu[j]) · gu[F + j] · w for j &lt; F.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Forward(float* gu, float* h, int F, float w)
    {
        int j = 0;
        for (; j + 16 <= F; j += 16) ForwardLanes(gu + j, gu + F + j, w).Store(h + j);
        if (j == F) return;
        float* g = stackalloc float[16], u = stackalloc float[16], o = stackalloc float[16];
        Tail(gu + j, g, F - j); Tail(gu + F + j, u, F - j);
        ForwardLanes(g, u, w).Store(o);
        for (int t = 0; j + t < F; t++) h[j + t] = o[t];
    }

    /// <summary>From a row's gate/up <paramref name="gu"/> [2F], its combine weight and the gradient of its weighted
    /// hidden <paramref name="dh"/> [F]: writes [∂g | ∂u] into <paramref name="dgu"/> [2F], the forward's weighted hidden
    /// again into <paramref name="h"/> [F] (the same bits as <see cref="Forward"/>), and returns ∂L/∂w.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Backward(float* gu, float* dh, float* dgu, float* h, int F, float w)
    {
        var dw = Vector512<float>.Zero;
        int j = 0;
        for (; j + 16 <= F; j += 16)
        {
            BackwardLanes(Vector512.Load(gu + j), Vector512.Load(gu + F + j), Vector512.Load(dh + j), w, out var dg, out var du, out var hw, ref dw);
            dg.Store(dgu + j); du.Store(dgu + F + j); hw.Store(h + j);
        }
        if (j < F)
        {
            int r = F - j;
            float* g = stackalloc float[16], u = stackalloc float[16], d = stackalloc float[16], og = stackalloc float[16], ou = stackalloc float[16], oh = stackalloc float[16];
            Tail(gu + j, g, r); Tail(gu + F + j, u, r); Tail(dh + j, d, r);     // padding lanes are 0: they add 0 to ∂w
            BackwardLanes(Vector512.Load(g), Vector512.Load(u), Vector512.Load(d), w, out var dg, out var du, out var hw, ref dw);
            dg.Store(og); du.Store(ou); hw.Store(oh);
            for (int t = 0; t < r; t++) { dgu[j + t] = og[t]; dgu[F + j + t] = ou[t]; h[j + t] = oh[t]; }
        }
        return Vector512.Sum(dw);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> ForwardLanes(float* g, float* u, float w)
    {
        var gate = Vector512.Load(g);
        var silu = gate / (Vector512.Create(1f) + VectorMath.Exp(-gate));
        return silu * Vector512.Load(u) * Vector512.Create(w);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void BackwardLanes(Vector512<float> g, Vector512<float> u, Vector512<float> d, float w,
                              out Vector512<float> dg, out Vector512<float> du, out Vector512<float> hw, ref Vector512<float> dw)
    {
        var one = Vector512.Create(1f);
        var e = one + VectorMath.Exp(-g);
        var sigma = one / e;                                           // σ(g)
        var silu = g / e;                                              // as Forward computes it
        hw = silu * u * Vector512.Create(w);                           // the forward's w · silu(g) · u, same operations
        dw += d * silu * u;                                            // Σ d · silu(g) · u
        var dwh = d * Vector512.Create(w);                             // ∂L/∂(silu(g) · u)
        du = dwh * silu;
        dg = dwh * u * sigma * (one + g * (one - sigma));
    }

    static void Tail(float* src, float* dst, int count)
    {
        for (int t = 0; t < 16; t++) dst[t] = t < count ? src[t] : 0f;
    }
}
