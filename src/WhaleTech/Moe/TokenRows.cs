// Token rows in and out of an expert, for the CPU float32 MoE kernels (Dispatch.Sorted, RoutedExpertsFunction):
//
//   Gather   rows[i] = src[tokens[i]]            what index_select(0, tokens) copies
//   Add      dst[tokens[i]] += rows[i], i = 0..c−1 in order   what index_add_(0, tokens, rows) adds, the same float
//                                                additions in the same order (a token chosen twice adds twice)
//
// libtorch's index_add_ runs a TensorIterator add per row (≈ 0.2 µs of setup for a 2 KiB row) and index_select a
// generic copy loop; for the 24,576 (token, expert) rows of a 4,096-token top-6 step these loops are a few ms each.
// The rows a token list names are scattered over [N, D] (8 MiB at 4,096 × 512, often evicted from L3 by the experts'
// GEMMs between two visits), so each loop prefetches the next listed row while it copies or adds the current one.
// Inputs: contiguous CPU float32 [N, D] tensors and a pointer to int64 token ids the caller has checked (< N).
// Shapes: N tokens, D hidden, c rows of one expert.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Moe;

internal static unsafe class TokenRows
{
    /// <summary>True when every id of the contiguous int64 <paramref name="tokens"/> is in [0, n).</summary>
    public static bool InRange(Tensor tokens, long n)
    {
        long* p = (long*)Core.SmallGemm.Data(tokens);
        for (long i = 0, count = tokens.numel(); i < count; i++)
            if ((ulong)p[i] >= (ulong)n) return false;
        GC.KeepAlive(tokens);
        return true;
    }

    /// <summary>rows [c, D] = src[tokens[i]] for a contiguous float32 src [N, D] (index_select's copy, without its per-call setup).</summary>
    public static Tensor Gather(Tensor src, long* tokens, long c)
    {
        long d = src.shape[1];
        var rows = torch.empty([c, d], dtype: ScalarType.Float32);
        float* ps = Core.SmallGemm.Data(src), pr = Core.SmallGemm.Data(rows);
        for (long i = 0; i < c; i++)
        {
            if (i + 1 < c) PrefetchRow(ps + tokens[i + 1] * d, d);
            Buffer.MemoryCopy(ps + tokens[i] * d, pr + i * d, d * sizeof(float), d * sizeof(float));
        }
        GC.KeepAlive(src);
        return rows;
    }

    /// <summary>dst[tokens[i]] += rows[i] in row order (what index_add_ computes, the same additions in the same order).</summary>
    public static void Add(Tensor dst, long* tokens, Tensor rows)
    {
        long c = rows.shape[0], d = rows.shape[1];
        float* pd = Core.SmallGemm.Data(dst), pr = Core.SmallGemm.Data(rows);
        for (long i = 0; i < c; i++)
        {
            if (i + 1 < c) PrefetchRow(pd + tokens[i + 1] * d, d);
            AddRow(pd + tokens[i] * d, pr + i * d, (int)d);
        }
        GC.KeepAlive(dst); GC.KeepAlive(rows);
    }

    /// <summary>Asks for the cache lines of row[0..d) (a hint: never faults, no effect on results).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void PrefetchRow(float* row, long d)
    {
        if (!System.Runtime.Intrinsics.X86.Sse.IsSupported) return;
        for (long j = 0; j < d; j += 16) System.Runtime.Intrinsics.X86.Sse.Prefetch0(row + j);
    }

    /// <summary>y[j] += v[j] for j &lt; D.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddRow(float* y, float* v, int D)
    {
        int j = 0;
        for (; j + 16 <= D; j += 16) (Vector512.Load(y + j) + Vector512.Load(v + j)).Store(y + j);
        for (; j < D; j++) y[j] += v[j];
    }
}
