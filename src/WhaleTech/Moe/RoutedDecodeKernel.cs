// The routed experts of one decode step in one pass, for CPU float32 inference:
//
//   y_t = Σ_{k} g_{t,k} · down_e( silu(gate_e x_t) · up_e x_t ),   e = indices[t, k]     (DeepSeekMoE eq. 9)
//
// the sum Dispatch.Sorted computes, for the few-rows-per-expert case of a decode step (batch × 1 token, K experts
// each). There the libtorch form is op-bound: sort, gather, split, per active expert a GEMM, two narrows, silu, two
// multiplies and a GEMM, then a cat and a weighted index_add — about a hundred TorchSharp calls of a few µs each,
// for a few hundred kB of weights. Here the routing ([N, K], tiny) is read on the host, the (token, expert) pairs
// are grouped by expert with a counting sort (tokens ascending within an expert, as Sorted's stable sort), and for
// each active expert, in ascending order:
//   rows  [c, D]   its tokens' x rows, gathered
//   gu    [c, 2F]  rows · GateUp[e]ᵀ          (SmallGemm NT over the stacked bank: gate and up in one product)
//   h     [c, F]   silu(gate) · up · g         (the combine weight scales the F-wide hidden, as Sorted does)
//   out   [c, D]   h · Down[e]ᵀ                (SmallGemm NT)
//   y[token] += out                            (in expert order, the order of Sorted's index_add_)
// The products are SmallGemm's, with its fixed summation order; silu is x / (1 + e^−x) in float32 with Core/VectorMath.Exp
// (within 2 ulps of e^x; libtorch's vectorized exp may differ in the last bits), so results equal the libtorch paths to float32 rounding (tests).
// Like SmallGemm, a token's bits do not depend on the other tokens of the batch (batch-invariant decode; tested).
//
// Applies only to: SmallGemm enabled (AVX-512; WHALETECH_SMALL_GEMM=0 turns both off), no autograd, CPU float32 x [N, D] contiguous, int64 indices and
// float32 weights [N, K] contiguous, a stacked bank (plain bias-free linears), D and F multiples of 16. Else null.
// Shapes: N tokens, K experts per token, E experts, D hidden, F expert width, c tokens of one expert.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using WhaleTech.Core;
using static TorchSharp.torch;

namespace WhaleTech.Moe;

internal static unsafe class RoutedDecodeKernel
{
    /// <summary>Forwards through this pass in this process (tests check that a path really used it).</summary>
    public static long Calls => Interlocked.Read(ref _calls);
    static long _calls;

    /// <summary>Per-thread scratch (rows, gu, h, out), grown as needed: a decode step allocates nothing here.</summary>
    [ThreadStatic] static float[]? _scratch;
    [ThreadStatic] static int[]? _pairs;

    /// <summary>True when the pass can take these inputs (checked before the bank is looked up).</summary>
    static bool Applies(Tensor x, Tensor indices, Tensor weights)
        => SmallGemm.CpuFloat32Inference(x) && x.dim() == 2 && x.is_contiguous() && x.shape[1] % 16 == 0
           && indices.device_type == DeviceType.CPU && indices.dtype == ScalarType.Int64 && indices.dim() == 2 && indices.is_contiguous()
           && indices.shape[0] == x.shape[0] && SmallGemm.CpuFloat32Inference(weights) && weights.is_contiguous()
           && weights.shape.SequenceEqual(indices.shape);

    /// <summary>y [N, D] = Σ_k weights[n, k] · experts[indices[n, k]](x[n]) over their stacked bank, or null where this
    /// pass does not apply (the caller runs Sorted's libtorch form). The inputs are checked once, before the bank is
    /// looked up.</summary>
    public static Tensor? Run(Tensor x, Tensor indices, Tensor weights, IReadOnlyList<Expert> experts)
        => SmallGemm.Enabled && Applies(x, indices, weights) && ExpertBank.For(experts) is { } bank ? OnBank(x, indices, weights, bank) : null;

    /// <summary>The pass over a given <paramref name="bank"/> without the hardware switch (tests run it on any CPU).</summary>
    internal static Tensor? RunKernel(Tensor x, Tensor indices, Tensor weights, ExpertBank bank)
        => Applies(x, indices, weights) ? OnBank(x, indices, weights, bank) : null;

    /// <summary>The pass itself, for inputs <see cref="Applies"/> accepted.</summary>
    static Tensor? OnBank(Tensor x, Tensor indices, Tensor weights, ExpertBank bank)
    {
        var gateUp = bank.GateUp; var down = bank.Down;
        long N = x.shape[0], D = x.shape[1], K = indices.shape[1], E = gateUp.shape[0], F = bank.Width;
        if (F % 16 != 0 || gateUp.shape[2] != D || !gateUp.is_contiguous() || !down.is_contiguous()
            || gateUp.dtype != ScalarType.Float32 || gateUp.device_type != DeviceType.CPU) return null;
        long pairs = N * K;
        var y = torch.zeros([N, D], dtype: ScalarType.Float32);
        if (pairs == 0) return y;

        long* idx = (long*)SmallGemm.Data(indices);
        float* g = SmallGemm.Data(weights);
        // Counting sort of the pairs by expert; pairs are visited token-major, so tokens stay ascending per expert.
        var start = new int[E + 1];
        for (long p = 0; p < pairs; p++)
        {
            long e = idx[p];
            if ((ulong)e >= (ulong)E) { y.Dispose(); throw new Runtime.WhaleArgumentException("indices", e, $"must be an expert in [0, {E})"); }
            start[e + 1]++;
        }
        int maxCount = 0;
        for (long e = 0; e < E; e++) { maxCount = Math.Max(maxCount, start[e + 1]); start[e + 1] += start[e]; }
        var order = _pairs is { } cached && cached.Length >= pairs ? cached : (_pairs = new int[pairs]);
        var fill = (int[])start.Clone();
        for (int p = 0; p < pairs; p++) order[fill[idx[p]]++] = p;

        long need = (long)maxCount * (D + 2 * F + F + D);
        var scratch = _scratch is { } s && s.Length >= need ? s : (_scratch = new float[need]);
        fixed (float* buf = scratch)
        fixed (int* ord = order)
        {
            float* rows = buf, gu = rows + maxCount * D, h = gu + maxCount * 2 * F, outp = h + maxCount * F;
            float* px = SmallGemm.Data(x), py = SmallGemm.Data(y), pgu = SmallGemm.Data(gateUp), pdown = SmallGemm.Data(down);
            for (long e = 0; e < E; e++)
            {
                int c = start[e + 1] - start[e];
                if (c == 0) continue;
                int* mine = ord + start[e];
                for (int i = 0; i < c; i++)
                    Buffer.MemoryCopy(px + mine[i] / K * D, rows + i * D, D * sizeof(float), D * sizeof(float));
                SmallGemm.Nt(rows, D, pgu + e * 2 * F * D, D, gu, 2 * F, c, (int)(2 * F), (int)D);   // [c, 2F]
                for (int i = 0; i < c; i++) SwiGluRows.Forward(gu + i * 2 * F, h + i * F, (int)F, g[mine[i]]);
                SmallGemm.Nt(h, F, pdown + e * D * F, F, outp, D, c, (int)D, (int)F);             // [c, D]
                for (int i = 0; i < c; i++) TokenRows.AddRow(py + mine[i] / K * D, outp + i * D, (int)D);
            }
        }
        GC.KeepAlive(x); GC.KeepAlive(indices); GC.KeepAlive(weights); GC.KeepAlive(gateUp); GC.KeepAlive(down);
        Interlocked.Increment(ref _calls);
        return y;
    }

    /// <summary>h [c, F] = silu(gu[:, :F]) · gu[:, F:] · rowWeight for a fused gate+up output <paramref name="gu"/> [c, 2F]
    /// and combine weights [c, 1], in one pass (what silu, mul_ and mul_ over two narrows compute; silu's exp may differ
    /// in the last bit), or null where it does not apply (the caller runs those three ops).</summary>
    public static Tensor? GatedHidden(Tensor gu, Tensor rowWeight, long width)
        => SmallGemm.Enabled ? GatedHiddenKernel(gu, rowWeight, width) : null;

    /// <summary><see cref="GatedHidden"/> without the hardware switch.</summary>
    internal static Tensor? GatedHiddenKernel(Tensor gu, Tensor rowWeight, long width)
    {
        if (!SmallGemm.CpuFloat32Inference(gu) || !SmallGemm.CpuFloat32Inference(rowWeight) || width % 16 != 0
            || gu.dim() != 2 || gu.shape[1] != 2 * width || !gu.is_contiguous() || rowWeight.numel() != gu.shape[0] || !rowWeight.is_contiguous())
            return null;
        return ExpertChain.WeightedHidden(gu, rowWeight, width);                        // [c, F], rowWeight read as [c]
    }
}
