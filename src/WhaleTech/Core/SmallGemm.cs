// Small-M matrix products for CPU inference: y = x · Wᵀ and y = x · B when x has few rows (M ≤ 16), the
// shapes of a decode step (batch × 1 new token through a linear; 16 heads × 1 query against a sequence's latent
// cache). libtorch's CPU BLAS runs these at a fraction of its large-GEMM rate (on the reference 2-core EPYC:
// M = 4 through a [4096, 2048] weight ≈ 11 GB/s of weight read and 23 GFLOP/s, against ≈ 100 GFLOP/s at
// 1024³), because its kernels are blocked for large M. These kernels are register-blocked for small M instead:
//
//   NT  y[m, n] = Σ_k x[m, k] · W[n, k]     (nn.Linear, scores against cached keys, the W_UV unfold)
//       M > 4: tiles of 4 rows of W, each against 4 rows of x (16 AVX-512 accumulators), so each load of x
//       serves 4 rows of W. M ≤ 4 (memory-bound) takes one of two walks, chosen per CPU (FewRows):
//       - Streams: one row of W at a time, prefetched 8 KiB ahead, serving every row of x from L1: a single
//         sequential stream. Fastest on Zen 5, where 4 interleaved weight rows streamed 1.3–1.7× slower at
//         batch 1–4 in tmp experiments (V2-Lite's linears, the fold and the unfold).
//       - Tiles: 4 rows of W against all rows of x (1 row of x: 4 chains). On Zen 4 one W row at a time read x
//         from L2 at 4× the weight's bytes (4 rows × K 2,048 is 32 KiB, all of L1) and waited on FMA latency:
//         the batch-4 decode step ran 1.45–1.49× faster in tiles (benchmarks/results/…/few-row-tiles).
//       Every NT product with ≥ 2 rows of x first copies rows that would share L1 sets (a multiple of 4 KiB
//       apart) apart (RowsApart).
//   NN  y[m, n] = Σ_k x[m, k] · B[k, n]     (probabilities × cached values, the W_UK fold)
//       a tile of 8 rows of x × 32 columns of B keeps 16 accumulators; each B row segment is loaded once and
//       multiplied by the broadcast x values; rows of B are prefetched ahead of the strided walk down k.
//       M ≤ 4: Streams accumulates y in L1 (B streams row by row, a load and a store of y per FMA: the fold
//       at batch 1–4 ran 1.3–1.8× faster this way on Zen 5); Tiles keeps up to 4 rows × 64 columns in registers
//       (on Zen 4 the fold at batch 4 read its 4 MiB ≈ 2.8× faster than streaming).
//
// Every output element has one fixed summation order (NT: one 16-lane accumulator over k, then the lane sum;
// NN: one accumulator per output over k) whichever tile computes it and whatever the thread count (threads
// split N at tile borders): results are batch-invariant (a row's bits do not depend on the other rows) and do
// not depend on torch.get_num_threads(). They differ from libtorch's in the last bits (another summation
// order); tests bound both by the fp32 dot-product error bound γ_K·Σ|x||w|.
//
// Used only where it applies: CPU, float32, no autograd, M ≤ MaxRows, unit stride in the reduced/stored
// dimension, K (NT) or N (NN) a multiple of 16, and AVX-512 in hardware. Anything else returns null and the
// caller runs libtorch. WHALETECH_SMALL_GEMM=0 (or SmallGemm.Enabled = false) turns it off.
//
// Shapes: M rows of x, K reduced dimension, N outputs; B batch of independent products (Bmm).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Core;

public static unsafe class SmallGemm
{
    /// <summary>Largest M (rows of x) these kernels take; larger products go to libtorch's blocked GEMM.</summary>
    public const int MaxRows = 16;

    /// <summary>On by default where AVX-512 is present; WHALETECH_SMALL_GEMM=0 turns it off at start-up.</summary>
    public static bool Enabled { get; set; } = Vector512.IsHardwareAccelerated && Environment.GetEnvironmentVariable("WHALETECH_SMALL_GEMM") != "0";

    /// <summary>How products with at most 4 rows of x walk W (NT) or B (NN); every walk gives the same bits.</summary>
    public enum FewRowWalk
    {
        /// <summary>One weight row (NT) or B row (NN) at a time: one sequential stream.</summary>
        Streams,
        /// <summary>Register tiles over 4 weight rows (NT) or 64 columns (NN).</summary>
        Tiles,
    }

    public const string FewRowsVariable = "WHALETECH_SMALL_GEMM_FEW_ROWS";

    /// <summary>The walk of M ≤ 4 products in this process: WHALETECH_SMALL_GEMM_FEW_ROWS=streams|tiles, else
    /// the faster one measured for this CPU (<see cref="FewRowWalkFor"/>). Read at first use, not at type
    /// initialisation, so a bad value is a WhaleArgumentException, not a TypeInitializationException.</summary>
    public static FewRowWalk FewRows
    {
        get => _fewRows ??= EnvironmentFewRows() ?? FewRowWalkFor(Runtime.MachineInfo.HostMicroarchitecture);
        set => _fewRows = value;
    }
    static FewRowWalk? _fewRows;

    /// <summary>WHALETECH_SMALL_GEMM_FEW_ROWS when set (checked: streams or tiles), else null. The programs call it
    /// before any work, so a typo is a one-line error naming the variable.</summary>
    public static FewRowWalk? EnvironmentFewRows()
    {
        var env = Environment.GetEnvironmentVariable(FewRowsVariable);
        if (string.IsNullOrWhiteSpace(env)) return null;
        return env.Trim().ToLowerInvariant() switch
        {
            "streams" => FewRowWalk.Streams,
            "tiles" => FewRowWalk.Tiles,
            _ => throw new Runtime.WhaleArgumentException(FewRowsVariable, env, "must be streams or tiles (how SmallGemm walks products with ≤ 4 rows of x; unset: chosen per CPU)"),
        };
    }

    /// <summary>Tiles on Zen 4, where they measured faster (the batch-4 step 1.45–1.49×); streams elsewhere: Zen 5
    /// measured 1.3–1.7× faster with streams, and on a CPU not measured the single stream is the hardware
    /// prefetcher's simplest case.</summary>
    public static FewRowWalk FewRowWalkFor(string? microarchitecture) => microarchitecture == "Zen 4" ? FewRowWalk.Tiles : FewRowWalk.Streams;

    /// <summary>Overrides <see cref="FewRows"/> for products started on this thread (tests compare the walks).</summary>
    [ThreadStatic] internal static FewRowWalk? FewRowsOverride;

    /// <summary>Whether a product with M rows of x runs in register tiles: always above 4 rows, else per FewRows.</summary>
    static bool UseTiles(int M) => M > 4 || (FewRowsOverride ?? FewRows) == FewRowWalk.Tiles;

    /// <summary>Products the kernels have computed in this process (tests check that a path really used them).</summary>
    public static long Calls => Interlocked.Read(ref _calls);
    static long _calls;

    /// <summary>x [..., K] · weight [N, K]ᵀ (+ bias [N]) like nn.functional.linear, or null where the kernel does not apply.</summary>
    public static Tensor? Linear(Tensor x, Tensor weight, Tensor? bias = null) => Enabled ? LinearKernel(x, weight, bias) : null;

    /// <summary><see cref="Linear"/> without the hardware switch (tests run the kernels on any CPU).</summary>
    internal static Tensor? LinearKernel(Tensor x, Tensor weight, Tensor? bias = null)
    {
        if (x.dim() < 1 || weight.dim() != 2 || !Eligible(x, weight, bias)) return null;
        long K = x.shape[^1], N = weight.shape[0];
        if (weight.shape[1] != K || K % 16 != 0 || !x.is_contiguous() || weight.stride(1) != 1) return null;
        long M = x.numel() / Math.Max(K, 1);
        if (M < 1 || M > MaxRows || (bias is not null && (bias.dim() != 1 || bias.shape[0] != N || !bias.is_contiguous()))) return null;
        var outShape = x.shape.ToArray(); outShape[^1] = N;
        var y = torch.empty(outShape, dtype: ScalarType.Float32);
        Nt(Data(x), K, Data(weight), weight.stride(0), Data(y), N, (int)M, (int)N, (int)K);
        GC.KeepAlive(x); GC.KeepAlive(weight);
        if (bias is not null) y.add_(bias);
        Interlocked.Increment(ref _calls);
        return y;
    }

    /// <summary>a [B, M, K] bmm b [B, K, N] (b row-major, or a transposed view of a row-major [B, N, K]), or null
    /// where the kernel does not apply.</summary>
    public static Tensor? Bmm(Tensor a, Tensor b) => Enabled ? BmmKernel(a, b) : null;

    /// <summary><see cref="Bmm"/> without the hardware switch.</summary>
    internal static Tensor? BmmKernel(Tensor a, Tensor b)
    {
        if (a.dim() != 3 || b.dim() != 3 || !Eligible(a, b, null)) return null;
        long batch = a.shape[0], M = a.shape[1], K = a.shape[2], N = b.shape[2];
        if (b.shape[0] != batch || b.shape[1] != K || M < 1 || M > MaxRows || a.stride(2) != 1) return null;
        bool nn = b.stride(2) == 1, nt = !nn && b.stride(1) == 1;
        if (!(nn && N % 16 == 0) && !(nt && K % 16 == 0)) return null;
        var y = torch.empty([batch, M, N], dtype: ScalarType.Float32);
        long sa = a.stride(0), lda = a.stride(1), sb = b.stride(0), ldb = nn ? b.stride(1) : b.stride(2);
        float* pa = Data(a), pb = Data(b), py = Data(y);
        for (long i = 0; i < batch; i++)
            if (nn) Nn(pa + i * sa, lda, pb + i * sb, ldb, py + i * M * N, N, (int)M, (int)N, (int)K);
            else Nt(pa + i * sa, lda, pb + i * sb, ldb, py + i * M * N, N, (int)M, (int)N, (int)K);
        GC.KeepAlive(a); GC.KeepAlive(b);
        Interlocked.Increment(ref _calls);
        return y;
    }

    /// <summary>a bmm b through the kernel where it applies, else libtorch's bmm.</summary>
    public static Tensor BmmOrTorch(Tensor a, Tensor b) => Bmm(a, b) ?? a.bmm(b);

    /// <summary>nn.functional.linear through the kernel where it applies, else libtorch's.</summary>
    public static Tensor LinearOrTorch(Tensor x, Tensor weight, Tensor? bias = null) => Linear(x, weight, bias) ?? nn.functional.linear(x, weight, bias);

    /// <summary>The address of element [0, …, 0] of a CPU tensor (views included: libtorch's data_ptr, storage offset
    /// applied). TorchSharp's Tensor.bytes refuses non-contiguous views, so this asks LibTorchSharp directly.</summary>
    internal static float* Data(Tensor t) => (float*)THSTensor_data(t.Handle);

    [System.Runtime.InteropServices.DllImport("LibTorchSharp")]
    static extern IntPtr THSTensor_data(IntPtr handle);

    static bool Eligible(Tensor x, Tensor w, Tensor? bias) => CpuFloat32Inference(x) && CpuFloat32Inference(w) && (bias is null || CpuFloat32Inference(bias));

    /// <summary>A CPU float32 tensor that autograd does not need: what every CPU inference kernel of Core takes.</summary>
    internal static bool CpuFloat32Inference(Tensor t)
        => t.device_type == DeviceType.CPU && t.dtype == ScalarType.Float32 && !(t.requires_grad && torch.is_grad_enabled());

    /// <summary>Kernels are compiled fully optimized at first call: .NET's tier-0 code for Vector512 loops runs
    /// ~10× slower, and decode calls each kernel only a few hundred times before tiering would promote it.</summary>
    const MethodImplOptions Hot = MethodImplOptions.AggressiveOptimization;

    /// <summary>Tiles of N handed to one thread: a multiple of 4 (the NT tile) and of 32 (the NN tile).</summary>
    const int Chunk = 128;

    /// <summary>Threads for products started on this thread (0: torch.get_num_threads()). Tests set it instead of
    /// torch's process-wide thread count, which tests running in parallel would see.</summary>
    [ThreadStatic] internal static int ThreadsOverride;

    /// <summary>Splits [0, N) into chunk-aligned ranges over torch's thread count when the product is large enough.</summary>
    static void ForChunks(int N, long work, Action<int, int> body)
    {
        int threads = Math.Min(ThreadsOverride > 0 ? ThreadsOverride : torch.get_num_threads(), (N + Chunk - 1) / Chunk);
        if (threads <= 1 || work < 1 << 20) { body(0, N); return; }
        int chunks = (N + Chunk - 1) / Chunk;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            int c0 = (int)((long)chunks * t / threads), c1 = (int)((long)chunks * (t + 1) / threads);
            body(c0 * Chunk, Math.Min(N, c1 * Chunk));
        });
    }

    /// <summary>y[M, N] (row stride ldy) = x[M, K] (row stride ldx) · W[N, K]ᵀ (row stride ldw); K % 16 == 0.</summary>
    internal static void Nt(float* x, long ldx, float* w, long ldw, float* y, long ldy, int M, int N, int K)
    {
        bool tiles = UseTiles(M);
        if (M > 1 && ldx * sizeof(float) % L1SetSpan == 0) x = RowsApart(x, ref ldx, M, K);
        ForChunks(N, (long)M * N * K, (n0, n1) => NtRange(x, ldx, w, ldw, y, ldy, M, n0, n1, K, tiles));
    }

    /// <summary>Bytes between addresses that share an L1 set (64 sets × 64 B lines on Zen 4 and Zen 5, and on recent
    /// Intel cores).</summary>
    const int L1SetSpan = 4096;

    /// <summary>Floats added to each row of x in <see cref="RowsApart"/>: 256 B, which measured faster than 64 B.</summary>
    const int RowPad = 64;

    [ThreadStatic] static float* _rowsApart;
    [ThreadStatic] static long _rowsApartFloats;

    /// <summary>x copied to a per-thread buffer with row stride K + RowPad, where its rows start a multiple of 4 KiB
    /// apart (x = [M, 2048] fp32 rows are 8 KiB apart). Every NT step loads the same k of all rows of x at once;
    /// rows on one L1 set compete for its ways and banks, and on the reference Zen 5 (1 thread, tmp experiment,
    /// q_proj [3072, 2048]) the product at 2 rows of x ran 1.3× and at 4 rows 1.2× faster with its rows copied apart.
    /// Same values, same order of operations: the same bits. The copy is M·K floats, read once for N·M dot products.
    /// The buffer grows to the largest product seen on the thread (at most MaxRows·(K + RowPad) floats) and is kept.</summary>
    static float* RowsApart(float* x, ref long ldx, int M, int K)
    {
        long stride = K + RowPad, need = M * stride;
        if (_rowsApartFloats < need)
        {
            if (_rowsApart != null) System.Runtime.InteropServices.NativeMemory.AlignedFree(_rowsApart);
            _rowsApart = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(need * sizeof(float)), 64);
            _rowsApartFloats = need;
        }
        for (int m = 0; m < M; m++) Buffer.MemoryCopy(x + m * ldx, _rowsApart + m * stride, (long)K * sizeof(float), (long)K * sizeof(float));
        ldx = stride;
        return _rowsApart;
    }

    /// <summary>Outputs [n0, n1) of every row (n0 a multiple of 4), in tiles or (M ≤ 4) one W row at a time.</summary>
    [MethodImpl(Hot)]
    static void NtRange(float* x, long ldx, float* w, long ldw, float* y, long ldy, int M, int n0, int n1, int K, bool tiles)
    {
        int n = n0;
        if (tiles)
        {
            for (; n + 4 <= n1; n += 4)                                  // tiles of 4 rows of W, all M rows of x each
                for (int m = 0; m < M; m += 4)
                {
                    int rows = Math.Min(4, M - m);
                    if (rows == 1) Nt1x4(x + m * ldx, w + n * ldw, ldw, y + m * ldy + n, K);
                    else Nt4x4(x + m * ldx, ldx, rows, w + n * ldw, ldw, y + m * ldy + n, ldy, K);
                }
        }
        for (; n < n1; n++)                                              // streams, or the last N % 4 outputs: one row of W each
            for (int m = 0; m < M; m += 4)
                NtRows(x + m * ldx, ldx, Math.Min(4, M - m), w + n * ldw, y + m * ldy + n, ldy, K, prefetch: m == 0);
    }

    /// <summary>y[0..rows, 0..4] for up to 4 rows of x against 4 rows of W: 16 chains. Missing rows repeat row 0 and
    /// are not stored. The next tile's 4 rows of W are prefetched at the same k.</summary>
    [MethodImpl(Hot)]
    static void Nt4x4(float* x0, long ldx, int rows, float* w0, long ldw, float* y, long ldy, int K)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default,
                         a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
        float* w1 = w0 + ldw, w2 = w1 + ldw, w3 = w2 + ldw;
        float* x1 = rows > 1 ? x0 + ldx : x0, x2 = rows > 2 ? x0 + 2 * ldx : x0, x3 = rows > 3 ? x0 + 3 * ldx : x0;
        long nextTile = 4 * ldw;                                                          // the next tile's rows
        for (int k = 0; k < K; k += 16)
        {
            PrefetchL2(w0 + k + nextTile); PrefetchL2(w1 + k + nextTile); PrefetchL2(w2 + k + nextTile); PrefetchL2(w3 + k + nextTile);
            var v0 = Vector512.Load(w0 + k); var v1 = Vector512.Load(w1 + k); var v2 = Vector512.Load(w2 + k); var v3 = Vector512.Load(w3 + k);
            var u = Vector512.Load(x0 + k);
            a00 = Vector512.FusedMultiplyAdd(u, v0, a00); a01 = Vector512.FusedMultiplyAdd(u, v1, a01); a02 = Vector512.FusedMultiplyAdd(u, v2, a02); a03 = Vector512.FusedMultiplyAdd(u, v3, a03);
            u = Vector512.Load(x1 + k);
            a10 = Vector512.FusedMultiplyAdd(u, v0, a10); a11 = Vector512.FusedMultiplyAdd(u, v1, a11); a12 = Vector512.FusedMultiplyAdd(u, v2, a12); a13 = Vector512.FusedMultiplyAdd(u, v3, a13);
            u = Vector512.Load(x2 + k);
            a20 = Vector512.FusedMultiplyAdd(u, v0, a20); a21 = Vector512.FusedMultiplyAdd(u, v1, a21); a22 = Vector512.FusedMultiplyAdd(u, v2, a22); a23 = Vector512.FusedMultiplyAdd(u, v3, a23);
            u = Vector512.Load(x3 + k);
            a30 = Vector512.FusedMultiplyAdd(u, v0, a30); a31 = Vector512.FusedMultiplyAdd(u, v1, a31); a32 = Vector512.FusedMultiplyAdd(u, v2, a32); a33 = Vector512.FusedMultiplyAdd(u, v3, a33);
        }
        var sums = LaneSums(a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33);   // [y row 0 | 1 | 2 | 3], 4 each
        sums.GetLower().GetLower().Store(y);
        if (rows < 2) return;
        sums.GetLower().GetUpper().Store(y + ldy);
        if (rows < 3) return;
        sums.GetUpper().GetLower().Store(y + 2 * ldy);
        if (rows < 4) return;
        sums.GetUpper().GetUpper().Store(y + 3 * ldy);
    }

    static readonly Vector512<int> EvenLanes = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    static readonly Vector512<int> OddLanes = Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);

    /// <summary>[a₀+a₁, a₂+a₃, …, a₁₄+a₁₅, b₀+b₁, …, b₁₄+b₁₅]: the sums of adjacent lanes of a, then of b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> PairSums(Vector512<float> a, Vector512<float> b)
        => Avx512F.PermuteVar16x32x2(a, EvenLanes, b) + Avx512F.PermuteVar16x32x2(a, OddLanes, b);

    /// <summary>The 16 lane sums of 16 accumulators in one vector, lane i = Vector512.Sum(a_i), in 15 pair steps
    /// instead of 16 separate reductions (the scores of absorbed decode, 16 heads × S keys over K = 576, ran
    /// 1.12–1.15× faster; tmp experiments on the reference Zen 5). Vector512.Sum adds adjacent lanes, then adjacent pairs, then
    /// quads, then the two halves; four levels of PairSums add the same pairs in the same order, so the bits are
    /// Vector512.Sum's (Core/SmallGemmTests compares them).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> LaneSums(Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3,
        Vector512<float> a4, Vector512<float> a5, Vector512<float> a6, Vector512<float> a7, Vector512<float> a8, Vector512<float> a9,
        Vector512<float> a10, Vector512<float> a11, Vector512<float> a12, Vector512<float> a13, Vector512<float> a14, Vector512<float> a15)
        => Avx512F.IsSupported   // else Vector512 is emulated (tests run the kernels on any CPU)
            ? PairSums(PairSums(PairSums(PairSums(a0, a1), PairSums(a2, a3)), PairSums(PairSums(a4, a5), PairSums(a6, a7))),
                       PairSums(PairSums(PairSums(a8, a9), PairSums(a10, a11)), PairSums(PairSums(a12, a13), PairSums(a14, a15))))
            : Vector512.Create(Vector512.Sum(a0), Vector512.Sum(a1), Vector512.Sum(a2), Vector512.Sum(a3), Vector512.Sum(a4), Vector512.Sum(a5),
                               Vector512.Sum(a6), Vector512.Sum(a7), Vector512.Sum(a8), Vector512.Sum(a9), Vector512.Sum(a10), Vector512.Sum(a11),
                               Vector512.Sum(a12), Vector512.Sum(a13), Vector512.Sum(a14), Vector512.Sum(a15));

    /// <summary>y[0, 0..4] for one row of x against 4 rows of W: 4 chains, each x load serving 4 rows of W.</summary>
    [MethodImpl(Hot)]
    static void Nt1x4(float* x, float* w0, long ldw, float* y, int K)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        float* w1 = w0 + ldw, w2 = w1 + ldw, w3 = w2 + ldw;
        long nextTile = 4 * ldw;
        for (int k = 0; k < K; k += 16)
        {
            PrefetchL2(w0 + k + nextTile); PrefetchL2(w1 + k + nextTile); PrefetchL2(w2 + k + nextTile); PrefetchL2(w3 + k + nextTile);
            var u = Vector512.Load(x + k);
            a0 = Vector512.FusedMultiplyAdd(u, Vector512.Load(w0 + k), a0); a1 = Vector512.FusedMultiplyAdd(u, Vector512.Load(w1 + k), a1);
            a2 = Vector512.FusedMultiplyAdd(u, Vector512.Load(w2 + k), a2); a3 = Vector512.FusedMultiplyAdd(u, Vector512.Load(w3 + k), a3);
        }
        y[0] = Vector512.Sum(a0); y[1] = Vector512.Sum(a1); y[2] = Vector512.Sum(a2); y[3] = Vector512.Sum(a3);
    }

    /// <summary>y[m, 0] = x[m] · w for the <paramref name="rows"/> (1–4) rows of x: one W row against up to four rows
    /// of x, four independent FMA chains (the last N % 4 outputs). Each output is one 16-lane
    /// accumulator over k in steps of 16, then the lane sum — the order of every NT tile, so an element's bits do
    /// not depend on which tile computed it. Missing rows repeat row 0 and are not stored.</summary>
    [MethodImpl(Hot)]
    static void NtRows(float* x0, long ldx, int rows, float* w, float* y, long ldy, int K, bool prefetch)
    {
        float* x1 = rows > 1 ? x0 + ldx : x0, x2 = rows > 2 ? x0 + 2 * ldx : x0, x3 = rows > 3 ? x0 + 3 * ldx : x0;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int k = 0; k < K; k += 16)
        {
            if (prefetch) Prefetch(w + k + RowAhead);
            var v = Vector512.Load(w + k);
            a0 = Vector512.FusedMultiplyAdd(Vector512.Load(x0 + k), v, a0); a1 = Vector512.FusedMultiplyAdd(Vector512.Load(x1 + k), v, a1);
            a2 = Vector512.FusedMultiplyAdd(Vector512.Load(x2 + k), v, a2); a3 = Vector512.FusedMultiplyAdd(Vector512.Load(x3 + k), v, a3);
        }
        y[0] = Vector512.Sum(a0);
        if (rows > 1) y[ldy] = Vector512.Sum(a1);
        if (rows > 2) y[2 * ldy] = Vector512.Sum(a2);
        if (rows > 3) y[3 * ldy] = Vector512.Sum(a3);
    }

    /// <summary>y[M, N] (row stride ldy) = x[M, K] (row stride ldx) · B[K, N] (row stride ldb); N % 16 == 0.</summary>
    internal static void Nn(float* x, long ldx, float* b, long ldb, float* y, long ldy, int M, int N, int K)
    {
        bool tiles = UseTiles(M);
        ForChunks(N, (long)M * N * K, (n0, n1) => NnRange(x, ldx, b, ldb, y, ldy, M, n0, n1, K, tiles));
    }

    /// <summary>Columns [n0, n1) of every row (n0 a multiple of 32).</summary>
    [MethodImpl(Hot)]
    static void NnRange(float* x, long ldx, float* b, long ldb, float* y, long ldy, int M, int n0, int n1, int K, bool tiles)
    {
        if (!tiles) { NnStream(x, ldx, b, ldb, y, ldy, M, n0, n1, K); return; }    // few rows, streamed
        if (M <= 4)                                                      // few rows: 4 × 64 register tiles
        {
            int c = n0;
            for (; c + 64 <= n1; c += 64) Nn4x64(x, ldx, M, b + c, ldb, y + c, ldy, K);
            if (c < n1) NnStream(x, ldx, b, ldb, y, ldy, M, c, n1, K);   // the last N % 64 columns
            return;
        }
        int n = n0;
        for (; n + 32 <= n1; n += 32)
        {
            for (int m = 0; m < M; m += 8) Nn8x32(x + m * ldx, ldx, Math.Min(8, M - m), b + n, ldb, y + m * ldy + n, ldy, K);
        }
        for (; n < n1; n += 16)
            for (int m = 0; m < M; m++) Nn1x16(x + m * ldx, b + n, ldb, y + m * ldy + n, K);
    }

    /// <summary>Software prefetch distances, tuned on the reference EPYCs (Zen 5; the L2 hints on Zen 4; 1 thread; measured in tmp
    /// experiments, the committed benchmark shows the effect): the one-row NT dot (the N % 4 tail) reads 8 KiB ahead,
    /// the NT tiles the next tile's 4 weight rows at the same k; the NN tile,
    /// whose walk down k jumps a row stride per step (2,304 B for the latent cache), touches the row 64 steps ahead,
    /// which the hardware prefetcher does not; the few-row NN tile touches its row segment 8 rows ahead into L2 and the
    /// few-row NN stream 4 rows ahead, non-temporally (NtaRowsAhead; the W_UK fold at batch ≤ 4 read its 4 MiB at
    /// ≈ 9 GB/s without). Prefetches never fault, so reading past the end is harmless.</summary>
    const int RowAhead = 2048, PrefetchRows = 64, StreamRowsAhead = 8;

    /// <summary>Non-temporal prefetch (prefetchnta): the few-row NN stream's rows of B, used once. On the reference
    /// Zen 5 the W_UK fold (16 heads × [128, 512], from memory) ran 1.3–1.4× faster this way, 4 rows ahead, than with
    /// prefetcht0 8 rows ahead (tmp experiment, 1 and 4 rows of x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void PrefetchNta(float* p) { if (Sse.IsSupported) Sse.PrefetchNonTemporal(p); }

    const int NtaRowsAhead = 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Prefetch(float* p) { if (Sse.IsSupported) Sse.Prefetch0(p); }

    /// <summary>Prefetch into L2 only (prefetcht1): what the tiles use for their streams. Into L1 (prefetcht0) the
    /// far-ahead lines of the weight or cache stream evict the rows of x and the lines in use; on the reference EPYC
    /// (tmp experiments, operands larger than L3) the 4-row NT tiles streamed 20–25 % faster this way and the 8 × 32
    /// NN tile over a batch-4 latent cache (37 MB) ran ≈ 2× faster.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void PrefetchL2(float* p) { if (Sse.IsSupported) Sse.Prefetch1(p); }

    /// <summary>y[0..rows, 0..32] for up to 8 rows of x (missing rows repeat row 0 and are not stored): 16 chains.</summary>
    [MethodImpl(Hot)]
    static void Nn8x32(float* x, long ldx, int rows, float* b, long ldb, float* y, long ldy, int K)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default,
                         c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        float* x1 = rows > 1 ? x + ldx : x, x2 = rows > 2 ? x + 2 * ldx : x, x3 = rows > 3 ? x + 3 * ldx : x,
               x4 = rows > 4 ? x + 4 * ldx : x, x5 = rows > 5 ? x + 5 * ldx : x, x6 = rows > 6 ? x + 6 * ldx : x, x7 = rows > 7 ? x + 7 * ldx : x;
        for (int k = 0; k < K; k++, b += ldb)
        {
            PrefetchL2(b + PrefetchRows * ldb); PrefetchL2(b + PrefetchRows * ldb + 16);     // rows ahead: the walk down k is strided
            var lo = Vector512.Load(b); var hi = Vector512.Load(b + 16);
            var s = Vector512.Create(x[k]); a0 = Vector512.FusedMultiplyAdd(s, lo, a0); c0 = Vector512.FusedMultiplyAdd(s, hi, c0);
            s = Vector512.Create(x1[k]); a1 = Vector512.FusedMultiplyAdd(s, lo, a1); c1 = Vector512.FusedMultiplyAdd(s, hi, c1);
            s = Vector512.Create(x2[k]); a2 = Vector512.FusedMultiplyAdd(s, lo, a2); c2 = Vector512.FusedMultiplyAdd(s, hi, c2);
            s = Vector512.Create(x3[k]); a3 = Vector512.FusedMultiplyAdd(s, lo, a3); c3 = Vector512.FusedMultiplyAdd(s, hi, c3);
            s = Vector512.Create(x4[k]); a4 = Vector512.FusedMultiplyAdd(s, lo, a4); c4 = Vector512.FusedMultiplyAdd(s, hi, c4);
            s = Vector512.Create(x5[k]); a5 = Vector512.FusedMultiplyAdd(s, lo, a5); c5 = Vector512.FusedMultiplyAdd(s, hi, c5);
            s = Vector512.Create(x6[k]); a6 = Vector512.FusedMultiplyAdd(s, lo, a6); c6 = Vector512.FusedMultiplyAdd(s, hi, c6);
            s = Vector512.Create(x7[k]); a7 = Vector512.FusedMultiplyAdd(s, lo, a7); c7 = Vector512.FusedMultiplyAdd(s, hi, c7);
        }
        a0.Store(y); c0.Store(y + 16);
        if (rows > 1) { a1.Store(y + ldy); c1.Store(y + ldy + 16); }
        if (rows > 2) { a2.Store(y + 2 * ldy); c2.Store(y + 2 * ldy + 16); }
        if (rows > 3) { a3.Store(y + 3 * ldy); c3.Store(y + 3 * ldy + 16); }
        if (rows > 4) { a4.Store(y + 4 * ldy); c4.Store(y + 4 * ldy + 16); }
        if (rows > 5) { a5.Store(y + 5 * ldy); c5.Store(y + 5 * ldy + 16); }
        if (rows > 6) { a6.Store(y + 6 * ldy); c6.Store(y + 6 * ldy + 16); }
        if (rows > 7) { a7.Store(y + 7 * ldy); c7.Store(y + 7 * ldy + 16); }
    }

    /// <summary>Few rows (all columns, or the tiles' last N % 64): B streams row by row (each row's [n0, n1) read once), and
    /// y[m, n0..n1) accumulates in place (in L1). y[m, n] = fma(x[m, k], B[k, n], y[m, n]) for k = 0, 1, … from +0:
    /// the same operations in the same order as a tile's accumulator, so the same bits.</summary>
    [MethodImpl(Hot)]
    static void NnStream(float* x, long ldx, float* b, long ldb, float* y, long ldy, int M, int n0, int n1, int K)
    {
        for (int m = 0; m < M; m++)
            for (int n = n0; n < n1; n += 16) Vector512<float>.Zero.Store(y + m * ldy + n);
        for (int k = 0; k < K; k++, b += ldb)
        {
            for (int n = n0; n < n1; n += 16) PrefetchNta(b + NtaRowsAhead * ldb + n);   // a row segment a few rows ahead
            for (int m = 0; m < M; m++)
            {
                var s = Vector512.Create(x[m * ldx + k]);
                float* ym = y + m * ldy;
                for (int n = n0; n < n1; n += 16) Vector512.FusedMultiplyAdd(s, Vector512.Load(b + n), Vector512.Load(ym + n)).Store(ym + n);
            }
        }
    }

    /// <summary>y[0..rows, 0..64] for up to 4 rows of x (missing rows repeat row 0 and are not stored): 16 chains
    /// in registers, each B row segment (256 B) loaded once for all rows.</summary>
    [MethodImpl(Hot)]
    static void Nn4x64(float* x, long ldx, int rows, float* b, long ldb, float* y, long ldy, int K)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, c0 = default, c1 = default, c2 = default, c3 = default,
                         d0 = default, d1 = default, d2 = default, d3 = default, e0 = default, e1 = default, e2 = default, e3 = default;
        float* x1 = rows > 1 ? x + ldx : x, x2 = rows > 2 ? x + 2 * ldx : x, x3 = rows > 3 ? x + 3 * ldx : x;
        for (int k = 0; k < K; k++, b += ldb)
        {
            float* ahead = b + StreamRowsAhead * ldb;
            PrefetchL2(ahead); PrefetchL2(ahead + 16); PrefetchL2(ahead + 32); PrefetchL2(ahead + 48);
            var v0 = Vector512.Load(b); var v1 = Vector512.Load(b + 16); var v2 = Vector512.Load(b + 32); var v3 = Vector512.Load(b + 48);
            var s = Vector512.Create(x[k]);
            a0 = Vector512.FusedMultiplyAdd(s, v0, a0); c0 = Vector512.FusedMultiplyAdd(s, v1, c0); d0 = Vector512.FusedMultiplyAdd(s, v2, d0); e0 = Vector512.FusedMultiplyAdd(s, v3, e0);
            s = Vector512.Create(x1[k]);
            a1 = Vector512.FusedMultiplyAdd(s, v0, a1); c1 = Vector512.FusedMultiplyAdd(s, v1, c1); d1 = Vector512.FusedMultiplyAdd(s, v2, d1); e1 = Vector512.FusedMultiplyAdd(s, v3, e1);
            s = Vector512.Create(x2[k]);
            a2 = Vector512.FusedMultiplyAdd(s, v0, a2); c2 = Vector512.FusedMultiplyAdd(s, v1, c2); d2 = Vector512.FusedMultiplyAdd(s, v2, d2); e2 = Vector512.FusedMultiplyAdd(s, v3, e2);
            s = Vector512.Create(x3[k]);
            a3 = Vector512.FusedMultiplyAdd(s, v0, a3); c3 = Vector512.FusedMultiplyAdd(s, v1, c3); d3 = Vector512.FusedMultiplyAdd(s, v2, d3); e3 = Vector512.FusedMultiplyAdd(s, v3, e3);
        }
        a0.Store(y); c0.Store(y + 16); d0.Store(y + 32); e0.Store(y + 48);
        if (rows < 2) return;
        y += ldy; a1.Store(y); c1.Store(y + 16); d1.Store(y + 32); e1.Store(y + 48);
        if (rows < 3) return;
        y += ldy; a2.Store(y); c2.Store(y + 16); d2.Store(y + 32); e2.Store(y + 48);
        if (rows < 4) return;
        y += ldy; a3.Store(y); c3.Store(y + 16); d3.Store(y + 32); e3.Store(y + 48);
    }

    [MethodImpl(Hot)]
    static void Nn1x16(float* x, float* b, long ldb, float* y, int K)
    {
        var acc = Vector512<float>.Zero;
        for (int k = 0; k < K; k++, b += ldb) acc = Vector512.FusedMultiplyAdd(Vector512.Create(x[k]), Vector512.Load(b), acc);
        acc.Store(y);
    }
}
