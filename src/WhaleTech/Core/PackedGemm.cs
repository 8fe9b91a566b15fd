// A cache-blocked fp32 GEMM on AVX-512 for the CPU kernels of the MoE experts (training, and inference above 16 rows):
//
//   C[M, N] = A[M, K] · B[K, N]        (or C += A · B),   A and B of any strides (transposed views included)
//
// Why: libtorch's CPU BLAS runs its AVX2 kernels on the reference AMD EPYC (Zen 5): a 2048³ product reaches ≈ 90–100
// GFLOP/s on one thread, about half of what 512-bit FMAs give in a register-only loop on the same core (≈ 237 GFLOP/s
// in a tmp experiment). This kernel runs the same product at ≈ 180–200 GFLOP/s (the benchmarks' limit probe measures
// both in the same rounds: benchmarks/results/cpu-amd-epyc-1t-quiet/packed-gemm/), and the MoE experts' mid-sized
// products (≈ 384 × 256 × 512 at 4,096 tokens, top-6 of 64) at about the same rate.
//
// Blocking (Goto & van de Geijn 2008, "Anatomy of high-performance matrix multiplication"):
//   for each KC-deep slice of k:   pack B[k-slice, :] into NR-wide column strips   Bp [N/NR][KC][NR]   (L2)
//     for each MC-high block of rows:  pack A[rows, k-slice] into MR-high panels   Ap [MC/MR][KC][MR]  (L2),
//                                      or, for a row-major A, read its rows in place
//       for each strip, for each panel:  the MR × NR micro-kernel: 16 accumulators in registers over the slice,
//                                       added to C (the first slice starts from zero unless accumulating)
// MR = 8 rows × NR = 32 columns (two 16-lane vectors): per k two loads of B, eight broadcasts of A, 16 FMAs.
// Partial edge tiles are computed on zero-padded panels into a scratch tile, then their valid part is copied.
//
// Numerics: every C element is one fused-multiply-add chain over k = 0, 1, …, K − 1 (from +0, or from C when
// accumulating), whatever the blocking, thread count or position in a tile; it differs from libtorch's BLAS in the
// last bits (another summation order), within the fp32 dot-product bound γ_K Σ|a||b| (tests).
// Shapes: M rows of A and C, K reduced dimension, N columns of B and C.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Core;

public static unsafe class PackedGemm
{
    const int MR = 8, NR = 32, KC = 256, MC = 128;
    const MethodImplOptions Hot = MethodImplOptions.AggressiveOptimization;

    /// <summary>Products computed in this process (tests check that a path really used the kernel).</summary>
    public static long Calls => Interlocked.Read(ref _calls);
    static long _calls;

    /// <summary>Pack buffers per thread, on the pinned heap (their addresses never move, so worker threads can use them
    /// without fixed blocks).</summary>
    [ThreadStatic] static float[]? _packA, _packB;

    static float* Pinned(ref float[]? buffer, long need)
    {
        if (buffer is null || buffer.Length < need) buffer = GC.AllocateUninitializedArray<float>((int)need, pinned: true);
        return (float*)Unsafe.AsPointer(ref buffer[0]);
    }

    /// <summary>a [M, K] · b [K, N] as a new contiguous tensor (<paramref name="into"/>: written there instead, or
    /// added to it with <paramref name="accumulate"/>), or null where the kernel does not apply: not CPU float32, autograd
    /// needs the inputs, not 2-D, or AVX-512 is absent (SmallGemm.Enabled; WHALETECH_SMALL_GEMM=0 turns it off).</summary>
    public static Tensor? Mm(Tensor a, Tensor b, Tensor? into = null, bool accumulate = false)
        => SmallGemm.Enabled ? MmKernel(a, b, into, accumulate) : null;

    /// <summary>x [M, K] · weight [N, K]ᵀ (a bias-free nn.functional.linear): SmallGemm's kernels for M ≤ SmallGemm.MaxRows,
    /// this kernel above, libtorch where neither applies.</summary>
    public static Tensor LinearOrTorch(Tensor x, Tensor weight)
        => x.dim() == 2 && x.shape[0] > SmallGemm.MaxRows && Mm(x, weight.t()) is { } y ? y : SmallGemm.LinearOrTorch(x, weight);

    /// <summary><see cref="Mm"/> without the hardware switch (tests run the kernel on any CPU).</summary>
    internal static Tensor? MmKernel(Tensor a, Tensor b, Tensor? into = null, bool accumulate = false)
    {
        if (a.dim() != 2 || b.dim() != 2 || a.shape[1] != b.shape[0]) return null;
        if (!SmallGemm.CpuFloat32Inference(a) || !SmallGemm.CpuFloat32Inference(b)) return null;
        long M = a.shape[0], K = a.shape[1], N = b.shape[1];
        if (M > int.MaxValue || K > int.MaxValue || (N + NR - 1) / NR * NR * KC > int.MaxValue) return null;   // B's pack is one array
        if (into is not null && (!SmallGemm.CpuFloat32Inference(into) || into.dim() != 2 || into.shape[0] != M || into.shape[1] != N
                                 || into.stride(1) != 1 || into.stride(0) < N)) return null;
        var c = into ?? torch.empty([M, N], dtype: ScalarType.Float32);
        if (M > 0 && N > 0)
        {
            if (K == 0) { if (!accumulate) c.zero_(); }
            else Gemm(SmallGemm.Data(a), a.stride(0), a.stride(1), SmallGemm.Data(b), b.stride(0), b.stride(1),
                      SmallGemm.Data(c), c.stride(0), (int)M, (int)N, (int)K, accumulate && into is not null);
        }
        GC.KeepAlive(a); GC.KeepAlive(b); GC.KeepAlive(c);
        Interlocked.Increment(ref _calls);
        return c;
    }

    /// <summary>c[M, N] (row stride ldc) = (or +=) a · b with a[i, k] = a[i·sa0 + k·sa1], b[k, j] = b[k·sb0 + j·sb1].
    /// Threads (torch's count, or SmallGemm's override) split the rows in MC blocks; B's slice is packed once for all.</summary>
    internal static void Gemm(float* a, long sa0, long sa1, float* b, long sb0, long sb1, float* c, long ldc, int M, int N, int K, bool accumulate)
    {
        int strips = (N + NR - 1) / NR, blocks = (M + MC - 1) / MC;
        float* bp = Pinned(ref _packB, (long)strips * NR * KC);
        int threads = (long)M * N * K < 1 << 22 ? 1 : Math.Min(blocks, SmallGemm.ThreadsOverride > 0 ? SmallGemm.ThreadsOverride : torch.get_num_threads());
        for (int k0 = 0; k0 < K; k0 += KC)
        {
            int kc = Math.Min(KC, K - k0);
            bool add = accumulate || k0 > 0;
            PackB(b + k0 * sb0, sb0, sb1, bp, kc, N);
            float* a0 = a + k0 * sa1;
            if (threads <= 1) for (int ib = 0; ib < blocks; ib++) Block(a0, sa0, sa1, bp, c, ldc, ib * MC, Math.Min(MC, M - ib * MC), N, kc, add);
            else Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            {
                for (int ib = t; ib < blocks; ib += threads) Block(a0, sa0, sa1, bp, c, ldc, ib * MC, Math.Min(MC, M - ib * MC), N, kc, add);
            });
        }
    }

    /// <summary>Rows [i0, i0 + mc) of c for one k-slice: every strip × panel tile. A row-major A is read in place; any
    /// other A (a transposed view) is packed into panels first. Edge tiles run on a zero-padded panel into a scratch tile.</summary>
    static void Block(float* a, long sa0, long sa1, float* bp, float* c, long ldc, int i0, int mc, int N, int kc, bool add)
    {
        float* ap = Pinned(ref _packA, (long)MC * KC);
        float* tile = stackalloc float[MR * NR];
        bool direct = sa1 == 1;
        if (!direct) PackA(a + i0 * sa0, sa0, sa1, ap, mc, kc);
        int strips = (N + NR - 1) / NR, panels = (mc + MR - 1) / MR;
        if (direct && mc % MR != 0) PackA(a + (i0 + (panels - 1) * MR) * sa0, sa0, sa1, ap + (long)(panels - 1) * kc * MR, mc % MR, kc);
        for (int s = 0; s < strips; s++)
        {
            int j = s * NR, nr = Math.Min(NR, N - j);
            float* bStrip = bp + (long)s * kc * NR;
            for (int p = 0; p < panels; p++)
            {
                int mr = Math.Min(MR, mc - p * MR);
                float* cTile = c + (i0 + p * MR) * ldc + j;
                bool inPlace = direct && mr == MR;
                float* panel = inPlace ? a + (i0 + p * MR) * sa0 : ap + (long)p * kc * MR;
                long rs = inPlace ? sa0 : 1, ks = inPlace ? 1 : MR;
                if (mr == MR && nr == NR) { Micro(panel, rs, ks, bStrip, kc, cTile, ldc, add); continue; }
                for (int r = 0; r < mr; r++)
                    for (int q = 0; q < NR; q++) tile[r * NR + q] = add && q < nr ? cTile[r * ldc + q] : 0f;
                Micro(panel, rs, ks, bStrip, kc, tile, NR, add);
                for (int r = 0; r < mr; r++)
                    for (int q = 0; q < nr; q++) cTile[r * ldc + q] = tile[r * NR + q];
            }
        }
    }

    /// <summary>Bp[s][k][0..NR) = b[k, s·NR + q] (zero past N): each strip's rows contiguous, read once per k by the kernel.
    /// Read along b's unit-stride dimension: rows of 32 for a row-major b, columns down k for a transposed view (Wᵀ).</summary>
    [MethodImpl(Hot)]
    static void PackB(float* b, long sb0, long sb1, float* bp, int kc, int N)
    {
        int strips = (N + NR - 1) / NR;
        for (int s = 0; s < strips; s++)
        {
            int j0 = s * NR, nr = Math.Min(NR, N - j0);
            float* dst = bp + (long)s * kc * NR;
            if (sb1 == 1 && nr == NR)
                for (int k = 0; k < kc; k++) { float* src = b + k * sb0 + j0; Vector512.Load(src).Store(dst + k * NR); Vector512.Load(src + 16).Store(dst + k * NR + 16); }
            else
            {
                if (nr < NR) for (long i = 0; i < (long)kc * NR; i++) dst[i] = 0f;
                if (sb0 == 1)
                    for (int q = 0; q < nr; q++) { float* col = b + (j0 + q) * sb1; for (int k = 0; k < kc; k++) dst[k * NR + q] = col[k]; }
                else
                    for (int k = 0; k < kc; k++) { float* src = b + k * sb0 + j0 * sb1; for (int q = 0; q < nr; q++) dst[k * NR + q] = src[q * sb1]; }
            }
        }
    }

    /// <summary>Ap[p][k][0..MR) = a[p·MR + r, k] (zero past the block's rows): the kernel's broadcasts read one 32-byte run
    /// per k. Read along a's unit-stride dimension: rows for a row-major a, runs of 8 down a column for a transposed view.</summary>
    [MethodImpl(Hot)]
    static void PackA(float* a, long sa0, long sa1, float* ap, int mc, int kc)
    {
        for (int p = 0; p * MR < mc; p++)
        {
            int mr = Math.Min(MR, mc - p * MR);
            float* dst = ap + (long)p * kc * MR, rows = a + p * MR * sa0;
            if (sa0 == 1 && mr == MR)
                for (int k = 0; k < kc; k++) Vector256.Load(rows + k * sa1).Store(dst + k * MR);
            else
                for (int r = 0; r < MR; r++)
                {
                    float* src = rows + r * sa0;
                    if (r >= mr) { for (int k = 0; k < kc; k++) dst[k * MR + r] = 0f; continue; }
                    for (int k = 0; k < kc; k++) dst[k * MR + r] = src[k * sa1];
                }
        }
    }

    /// <summary>c[0..MR, 0..NR) (row stride ldc) = (add: c +) Σ_k a[r·rs + k·ks] · bp[k][q], one FMA chain per element. A
    /// is a packed panel (rs = 1, ks = MR) or, for a row-major A, its rows in place (rs = lda, ks = 1): eight rows
    /// read along k are eight sequential streams, and packing them would cost more than it saves at these sizes.</summary>
    [MethodImpl(Hot)]
    static void Micro(float* a, long rs, long ks, float* bp, int kc, float* c, long ldc, bool add)
    {
        Vector512<float> a0, a1, a2, a3, a4, a5, a6, a7, c0, c1, c2, c3, c4, c5, c6, c7;
        if (add)
        {
            a0 = Vector512.Load(c); c0 = Vector512.Load(c + 16); a1 = Vector512.Load(c + ldc); c1 = Vector512.Load(c + ldc + 16);
            a2 = Vector512.Load(c + 2 * ldc); c2 = Vector512.Load(c + 2 * ldc + 16); a3 = Vector512.Load(c + 3 * ldc); c3 = Vector512.Load(c + 3 * ldc + 16);
            a4 = Vector512.Load(c + 4 * ldc); c4 = Vector512.Load(c + 4 * ldc + 16); a5 = Vector512.Load(c + 5 * ldc); c5 = Vector512.Load(c + 5 * ldc + 16);
            a6 = Vector512.Load(c + 6 * ldc); c6 = Vector512.Load(c + 6 * ldc + 16); a7 = Vector512.Load(c + 7 * ldc); c7 = Vector512.Load(c + 7 * ldc + 16);
        }
        else
        {
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = Vector512<float>.Zero;
            c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = Vector512<float>.Zero;
        }
        float* r0 = a, r1 = a + rs, r2 = a + 2 * rs, r3 = a + 3 * rs, r4 = a + 4 * rs, r5 = a + 5 * rs, r6 = a + 6 * rs, r7 = a + 7 * rs;
        long off = 0;
        for (int k = 0; k < kc; k++, off += ks, bp += NR)
        {
            var lo = Vector512.Load(bp); var hi = Vector512.Load(bp + 16);
            var s = Vector512.Create(r0[off]); a0 = Vector512.FusedMultiplyAdd(s, lo, a0); c0 = Vector512.FusedMultiplyAdd(s, hi, c0);
            s = Vector512.Create(r1[off]); a1 = Vector512.FusedMultiplyAdd(s, lo, a1); c1 = Vector512.FusedMultiplyAdd(s, hi, c1);
            s = Vector512.Create(r2[off]); a2 = Vector512.FusedMultiplyAdd(s, lo, a2); c2 = Vector512.FusedMultiplyAdd(s, hi, c2);
            s = Vector512.Create(r3[off]); a3 = Vector512.FusedMultiplyAdd(s, lo, a3); c3 = Vector512.FusedMultiplyAdd(s, hi, c3);
            s = Vector512.Create(r4[off]); a4 = Vector512.FusedMultiplyAdd(s, lo, a4); c4 = Vector512.FusedMultiplyAdd(s, hi, c4);
            s = Vector512.Create(r5[off]); a5 = Vector512.FusedMultiplyAdd(s, lo, a5); c5 = Vector512.FusedMultiplyAdd(s, hi, c5);
            s = Vector512.Create(r6[off]); a6 = Vector512.FusedMultiplyAdd(s, lo, a6); c6 = Vector512.FusedMultiplyAdd(s, hi, c6);
            s = Vector512.Create(r7[off]); a7 = Vector512.FusedMultiplyAdd(s, lo, a7); c7 = Vector512.FusedMultiplyAdd(s, hi, c7);
        }
        a0.Store(c); c0.Store(c + 16); a1.Store(c + ldc); c1.Store(c + ldc + 16);
        a2.Store(c + 2 * ldc); c2.Store(c + 2 * ldc + 16); a3.Store(c + 3 * ldc); c3.Store(c + 3 * ldc + 16);
        a4.Store(c + 4 * ldc); c4.Store(c + 4 * ldc + 16); a5.Store(c + 5 * ldc); c5.Store(c + 5 * ldc + 16);
        a6.Store(c + 6 * ldc); c6.Store(c + 6 * ldc + 16); a7.Store(c + 7 * ldc); c7.Store(c + 7 * ldc + 16);
    }
}
