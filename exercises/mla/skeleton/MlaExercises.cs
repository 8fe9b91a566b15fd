// MLA exercises — fill in each TODO, then run `dotnet test exercises/mla` until every test passes.
//
// Papers: DeepSeek-V2 (2024) §2.1 (eqs. 9–19) and Table 1 (KV cache per token), §2.1.2 ("absorb W^UK into W^UQ,
// W^UV into W^O"); DeepSeek-V3 (2024) §2.1.1 eqs. 1–11. The library versions: src/WhaleTech/Attention/
// KvAccounting.cs and MultiHeadLatentAttention.cs (AttendAbsorbed, LatentCache) — read their headers first.
//
//   c_t^KV = W^DKV h_t (latent, Dc wide; cached)      k_t^R = RoPE(W^KR h_t) (Dr wide, shared by all heads; cached)
//   k_t,i^C = W_i^UK c_t^KV   v_t,i = W_i^UV c_t^KV   (per head; the naive path materializes and caches these)
//   score_t,j,i = (q_t,i^C · k_j,i^C + q_t,i^R · k_j^R) · scale,   o_t,i = Σ_j softmax_j(score) v_j,i
//
// Shapes: H heads, T new tokens (queries), S cached tokens (keys; the T queries are the last T of them),
// Dn qk_nope_head_dim, Dr qk_rope_head_dim, Dc kv_lora_rank, Dv v_head_dim, B batch, C cache capacity.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Exercises.Mla;

/// <summary>What one attention layer caches per token.</summary>
public enum KvKind { Mha, Gqa, Mqa, MlaLatent }

/// <summary>Dimensions for KV accounting: l layers, n_h heads, d_h head dim, n_g KV heads (GQA), d_c latent, d_h^R rope dim.</summary>
public sealed record AttentionDims(int Layers, int Heads, int HeadDim, int KvHeads, int LatentDim, int RopeDim);

public static class MlaExercises
{
    /// <summary>Exercise 1a — KV-cache elements per token per layer (DeepSeek-V2 Table 1 without the factor l):
    /// MHA 2·n_h·d_h, GQA 2·n_g·d_h, MQA 2·d_h, MLA latent d_c + d_h^R. DeepSeek-V3 (n_h = d_h = 128, d_c = 512,
    /// d_h^R = 64): MHA 32768, MLA 576.</summary>
    public static long ElementsPerTokenPerLayer(KvKind kind, AttentionDims d)
    {
        // TODO: a switch expression; compute in long.
        throw new NotImplementedException("Exercise 1a: ElementsPerTokenPerLayer");
    }

    /// <summary>Exercise 1b — bytes of the whole model's cache for <paramref name="batch"/> sequences of
    /// <paramref name="context"/> tokens: elements per token per layer · l · batch · context · bytes per element
    /// (2 for BF16). DeepSeek-V3, BF16, one 128K-token sequence: MLA 8.6 GiB, MHA 488 GiB.</summary>
    public static double CacheBytes(KvKind kind, AttentionDims d, long batch, long context, double bytesPerElement)
    {
        // TODO: use exercise 1a; mind overflow (do the product in double).
        throw new NotImplementedException("Exercise 1b: CacheBytes");
    }

    /// <summary>Given — naive MLA attention: materialize per-head keys K^C = c W_UKᵀ [H, S, Dn] and values
    /// V = c W_UVᵀ [H, S, Dv] from the latent, then ordinary causal attention. qNope [H, T, Dn], qRope [H, T, Dr]
    /// (already rotated), latent [S, Dc], kRope [S, Dr], wUK [H, Dn, Dc], wUV [H, Dv, Dc] (the two halves of HF's
    /// kv_b_proj.weight viewed as [H, Dn + Dv, Dc]) → o [H, T, Dv]. Query t sits at position S − T + t.</summary>
    public static Tensor NaiveAttention(Tensor qNope, Tensor qRope, Tensor latent, Tensor kRope, Tensor wUK, Tensor wUV, double scale)
    {
        var kNope = torch.matmul(latent, wUK.transpose(1, 2));                       // [H, S, Dn] = c W_UKᵀ per head
        var v = torch.matmul(latent, wUV.transpose(1, 2));                           // [H, S, Dv]
        var scores = torch.matmul(qNope, kNope.transpose(1, 2))                      // [H, T, S]
                   + torch.matmul(qRope, kRope.t());                                 // k^R shared by all heads
        var probs = (scores * scale + CausalMask(qNope.shape[1], latent.shape[0])).softmax(-1);
        return torch.matmul(probs, v);                                               // [H, T, Dv]
    }

    /// <summary>Exercise 2 — the same function, weight-absorbed (DeepSeek-V2 §2.1.2): never build per-head K or V.
    /// Fold W_UK into the query (q^C·(W_UK c) = (W_UKᵀ q^C)·c), so every head scores the SHARED latent rows directly;
    /// attend over the latent (o^lat = Σ_j p_j c_j, [H, T, Dc]); unfold with W_UV at the end (o = W_UV o^lat).
    /// Same arguments and result as NaiveAttention, equal up to fp32 rounding.</summary>
    public static Tensor AbsorbedAttention(Tensor qNope, Tensor qRope, Tensor latent, Tensor kRope, Tensor wUK, Tensor wUV, double scale)
    {
        // TODO: qLatent = qNope · wUK → [H, T, Dc]; scores = qLatent·latentᵀ + qRope·kRopeᵀ; scale, CausalMask,
        // softmax; probs · latent → [H, T, Dc]; · wUVᵀ → [H, T, Dv]. Count the multiply-adds of both versions for
        // T = 1 and a long S: which is cheaper per decoded token, and why does the cache only hold Dc + Dr numbers?
        throw new NotImplementedException("Exercise 2: AbsorbedAttention");
    }

    /// <summary>Exercise 3 — the latent cache update of one step. cache [B, C, Dc + Dr] holds, per slot, the latent
    /// c^KV in columns [0, Dc) and the rotated k^R in [Dc, Dc + Dr) (the layout of MultiHeadLatentAttention.LatentCache).
    /// Write the T new tokens' latent [B, T, Dc] and kRope [B, T, Dr] into slots [start, start + T) in place, leave
    /// every other slot alone, and return the view cache[:, 0 : start + T] (the keys the step attends over).
    /// Throw ArgumentOutOfRangeException when start &lt; 0 or the tokens do not fit the capacity C.</summary>
    public static Tensor AppendToLatentCache(Tensor cache, Tensor latent, Tensor kRope, long start)
    {
        // TODO: cache.narrow(1, start, T).narrow(2, …).copy_(…) twice; then narrow(1, 0, start + T).
        throw new NotImplementedException("Exercise 3: AppendToLatentCache");
    }

    /// <summary>Given — the additive causal mask [T, S] (0 or −inf) of T queries that are the last T of S positions.</summary>
    public static Tensor CausalMask(long T, long S)
    {
        var q = torch.arange(S - T, S).unsqueeze(1);                                 // [T, 1] query positions
        var k = torch.arange(S).unsqueeze(0);                                        // [1, S] key positions
        return torch.zeros(T, S).masked_fill(k.gt(q), float.NegativeInfinity);
    }
}
