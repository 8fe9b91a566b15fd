// The absorbed MLA attention of one decode step (T = 1) in one pass, for CPU float32 inference
// (DeepSeek-V2 §2.1.2 and Appendix C, "absorb W^UK into W^UQ and W^UV into W^O"):
//
//   q^C_{b,h}  = q^nope_{b,h} · W_UK_h                                  fold, [Dn] → [Dc]
//   s_{b,h,j}  = [q^C_{b,h} | q^R_{b,h}] · [c_{b,j} | k^R_{b,j}] · scale + mask_{b,j}
//   p_{b,h}    = softmax_j(s_{b,h})                                     fp32
//   o_{b,h}    = (Σ_j p_{b,h,j} c_{b,j}) · W_UV_hᵀ                      values over the latent, then unfold, [Dc] → [Dv]
//
// MultiHeadLatentAttention.AttendAbsorbed computes the same with ~15 TorchSharp calls (permute/reshape copies, a
// cat, in-place scale and mask, softmax, views) around its four products. At batch 1–4 a decode step is short
// enough that those calls cost about a quarter of it (benchmarks/results/cpu-amd-epyc-1t-quiet/mla-roofline.md:
// the step at 1.16–1.31× its products). Here the four products are the same SmallGemm calls with the same
// operands (fold and unfold with the heads as the batch dimension, the H query rows of a sequence as one product
// against its cached rows, read once for the scores and once for the values), so their bits are the same; the
// scale, mask and softmax run in C# between them (softmax's exp is Core/VectorMath.Exp, its sum
// in another order than libtorch's: the probabilities may differ in the last bits; tests bound the difference
// against the equations in float64 and against recomputation).
//
// Applies only to: SmallGemm enabled (AVX-512; WHALETECH_SMALL_GEMM=0 turns it off), no autograd, float32 CPU
// tensors, T = 1, B ≤ SmallGemm.MaxRows, unit inner strides, Dc and Dc + Dr multiples of 16, an additive float32
// mask [B or 1, 1, 1, S]. Anything else returns null and AttendAbsorbed runs its libtorch form.
// Shapes: B batch, H heads, S cached positions, Dn/Dr/Dv nope/rope/value head dims, Dc kv_lora_rank.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using WhaleTech.Core;
using static TorchSharp.torch;

namespace WhaleTech.Attention;

internal static unsafe class AbsorbedDecodeKernel
{
    /// <summary>Decode steps computed by this pass in this process (tests check that a path really used it).</summary>
    public static long Calls => Interlocked.Read(ref _calls);
    static long _calls;

    [ThreadStatic] static float[]? _scratch;

    /// <summary>o [B, 1, H, Dv] (contiguous), or null where this pass does not apply.</summary>
    /// <param name="qNope">[B, 1, H, Dn] (a view of q_proj's output).</param>
    /// <param name="qRope">[B, 1, H, Dr], RoPE applied.</param>
    /// <param name="kv">[B, S, Dc + Dr] cached [c^KV | k^R] rows.</param>
    /// <param name="mask">additive [B or 1, 1, 1, S].</param>
    /// <param name="kvB">kv_b_proj.weight [H·(Dn + Dv), Dc].</param>
    public static Tensor? Run(Tensor qNope, Tensor qRope, Tensor kv, Tensor mask, Tensor kvB, int heads, long dn, long dv, double scale)
        => SmallGemm.Enabled ? RunKernel(qNope, qRope, kv, mask, kvB, heads, dn, dv, scale) : null;

    /// <summary><see cref="Run"/> without the hardware switch (tests run the pass on any CPU).</summary>
    internal static Tensor? RunKernel(Tensor qNope, Tensor qRope, Tensor kv, Tensor mask, Tensor kvB, int heads, long dn, long dv, double scale)
    {
        if (qNope.dim() != 4 || qRope.dim() != 4 || kv.dim() != 3 || mask.dim() != 4 || kvB.dim() != 2) return null;
        long B = qNope.shape[0], T = qNope.shape[1], H = heads, S = kv.shape[1], Dr = qRope.shape[3], Dc = kv.shape[2] - Dr;
        if (T != 1 || B < 1 || B > SmallGemm.MaxRows || S < 1 || qNope.shape[2] != H || qNope.shape[3] != dn) return null;
        if (!qRope.shape.SequenceEqual(new[] { B, T, H, Dr }) || kv.shape[0] != B || Dc <= 0 || Dc % 16 != 0 || (Dc + Dr) % 16 != 0) return null;
        if (kvB.shape[0] != H * (dn + dv) || kvB.shape[1] != Dc || !kvB.is_contiguous()) return null;
        if (mask.shape[1] != 1 || mask.shape[2] != 1 || mask.shape[3] != S || (mask.shape[0] != B && mask.shape[0] != 1) || mask.dtype != ScalarType.Float32) return null;
        foreach (var t in new[] { qNope, qRope, kv, mask, kvB })
            if (!SmallGemm.CpuFloat32Inference(t) || (t.stride((int)t.dim() - 1) != 1 && t.shape[(int)t.dim() - 1] > 1)) return null;

        var y = torch.empty([B, 1, H, dv], dtype: ScalarType.Float32);
        long rowQ = qNope.stride(0), headQ = qNope.stride(2), rowR = qRope.stride(0), headR = qRope.stride(2);
        long seqKv = kv.stride(0), rowKv = kv.stride(1), seqMask = mask.shape[0] == 1 ? 0 : mask.stride(0);
        long need = 2 * H * B * Dc + H * (Dc + Dr) + H * S;
        var scratch = _scratch is { } s && s.Length >= need ? s : (_scratch = new float[need]);
        fixed (float* buf = scratch)
        {
            float* qLat = buf;                       // [H, B, Dc] folded queries, heads outermost
            float* oLat = qLat + H * B * Dc;         // [H, B, Dc] attention outputs over the latent
            float* q4 = oLat + H * B * Dc;           // [H, Dc + Dr] one sequence's [q^C | q^R] rows
            float* probs = q4 + H * (Dc + Dr);       // [H, S] its scores, then probabilities
            float* pq = SmallGemm.Data(qNope), pr = SmallGemm.Data(qRope), pkv = SmallGemm.Data(kv), pm = SmallGemm.Data(mask);
            float* pw = SmallGemm.Data(kvB), py = SmallGemm.Data(y);
            long headW = (dn + dv) * Dc;             // one head's [W_UK; W_UV] rows in kv_b_proj.weight
            for (long h = 0; h < H; h++)             // fold: [B, Dn] · W_UK_h [Dn, Dc], heads as the batch dimension
                SmallGemm.Nn(pq + h * headQ, rowQ, pw + h * headW, Dc, qLat + h * B * Dc, Dc, (int)B, (int)Dc, (int)dn);
            for (long b = 0; b < B; b++)
            {
                for (long h = 0; h < H; h++)
                {
                    Buffer.MemoryCopy(qLat + (h * B + b) * Dc, q4 + h * (Dc + Dr), Dc * sizeof(float), Dc * sizeof(float));
                    Buffer.MemoryCopy(pr + b * rowR + h * headR, q4 + h * (Dc + Dr) + Dc, Dr * sizeof(float), Dr * sizeof(float));
                }
                float* keys = pkv + b * seqKv;
                SmallGemm.Nt(q4, Dc + Dr, keys, rowKv, probs, S, (int)H, (int)S, (int)(Dc + Dr));   // [H, S] scores
                for (long h = 0; h < H; h++) Softmax(probs + h * S, pm + b * seqMask, (int)S, (float)scale);
                // values: [H, S] · c [S, Dc] (the latent columns of the cached rows), into head-major rows of oLat
                SmallGemm.Nn(probs, S, keys, rowKv, oLat + b * Dc, B * Dc, (int)H, (int)Dc, (int)S);
            }
            for (long h = 0; h < H; h++)             // unfold: [B, Dc] · W_UV_hᵀ → o[:, 0, h, :]
                SmallGemm.Nt(oLat + h * B * Dc, Dc, pw + h * headW + dn * Dc, Dc, py + h * dv, H * dv, (int)B, (int)dv, (int)Dc);
        }
        GC.KeepAlive(qNope); GC.KeepAlive(qRope); GC.KeepAlive(kv); GC.KeepAlive(mask); GC.KeepAlive(kvB);
        Interlocked.Increment(ref _calls);
        return y;
    }

    /// <summary>Writes the step's latent [B, T, Dc] and RoPE key [B, T, Dr] into rows start..start+T of the cache
    /// <paramref name="kv"/> [B, C, Dc + Dr] with plain row copies (what two narrow(...).copy_ calls do, without
    /// libtorch's copy machinery); false, writing nothing, where it does not apply.</summary>
    public static bool WriteCache(Tensor kv, long start, Tensor latent, Tensor kRope)
        => SmallGemm.Enabled && WriteCacheRows(kv, start, latent, kRope);

    /// <summary><see cref="WriteCache"/> without the hardware switch.</summary>
    internal static bool WriteCacheRows(Tensor kv, long start, Tensor latent, Tensor kRope)
    {
        if (kv.dim() != 3 || latent.dim() != 3 || kRope.dim() != 3) return false;
        long B = kv.shape[0], T = latent.shape[1], Dc = latent.shape[2], Dr = kRope.shape[2];
        if (latent.shape[0] != B || kRope.shape[0] != B || kRope.shape[1] != T || kv.shape[2] != Dc + Dr || start < 0 || start + T > kv.shape[1]) return false;
        foreach (var t in new[] { kv, latent, kRope })
            if (!SmallGemm.CpuFloat32Inference(t) || !t.is_contiguous()) return false;
        float* pkv = SmallGemm.Data(kv), pl = SmallGemm.Data(latent), pr = SmallGemm.Data(kRope);
        long C = kv.shape[1], W = Dc + Dr;
        for (long b = 0; b < B; b++)
            for (long t = 0; t < T; t++)
            {
                float* row = pkv + (b * C + start + t) * W;
                Buffer.MemoryCopy(pl + (b * T + t) * Dc, row, Dc * sizeof(float), Dc * sizeof(float));
                Buffer.MemoryCopy(pr + (b * T + t) * Dr, row + Dc, Dr * sizeof(float), Dr * sizeof(float));
            }
        GC.KeepAlive(kv); GC.KeepAlive(latent); GC.KeepAlive(kRope);
        return true;
    }

    /// <summary>row ← softmax(row · scale + mask) in float32: (s · scale) + m rounded as the libtorch form's in-place
    /// mul_ and add_, then exp(v − max) and a division by the sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Softmax(float* row, float* mask, int S, float scale)
    {
        int j16 = S - S % 16;
        var vscale = Vector512.Create(scale);
        var vmax = Vector512.Create(float.NegativeInfinity);
        for (int j = 0; j < j16; j += 16)
        {
            var v = Vector512.Load(row + j) * vscale + Vector512.Load(mask + j);
            v.Store(row + j);
            vmax = Vector512.Max(vmax, v);
        }
        float max = MaxLane(vmax);
        for (int j = j16; j < S; j++) { float v = row[j] * scale + mask[j]; row[j] = v; if (v > max) max = v; }
        vmax = Vector512.Create(max);
        var vsum = Vector512<float>.Zero;
        for (int j = 0; j < j16; j += 16) { var e = VectorMath.Exp(Vector512.Load(row + j) - vmax); e.Store(row + j); vsum += e; }
        float sum = Vector512.Sum(vsum);
        for (int j = j16; j < S; j++) { float e = MathF.Exp(row[j] - max); row[j] = e; sum += e; }
        float inv = 1f / sum;
        var vinv = Vector512.Create(inv);
        for (int j = 0; j < j16; j += 16) (Vector512.Load(row + j) * vinv).Store(row + j);
        for (int j = j16; j < S; j++) row[j] *= inv;
    }

    static float MaxLane(Vector512<float> v)
    {
        float m = float.NegativeInfinity;
        for (int i = 0; i < 16; i++) m = Math.Max(m, v.GetElement(i));
        return m;
    }
}
