// MLA exercises — reference solutions (see ../skeleton for the tasks and ../README.md).
//
// Papers: DeepSeek-V2 (2024) §2.1 (eqs. 9–19) and Table 1 (KV cache per token), §2.1.2 ("absorb W^UK into W^UQ,
// W^UV into W^O"); DeepSeek-V3 (2024) §2.1.1 eqs. 1–11.
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
    public static long ElementsPerTokenPerLayer(KvKind kind, AttentionDims d) => kind switch
    {
        KvKind.Mha => 2L * d.Heads * d.HeadDim,
        KvKind.Gqa => 2L * d.KvHeads * d.HeadDim,
        KvKind.Mqa => 2L * d.HeadDim,
        KvKind.MlaLatent => (long)d.LatentDim + d.RopeDim,
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    public static double CacheBytes(KvKind kind, AttentionDims d, long batch, long context, double bytesPerElement)
        => (double)ElementsPerTokenPerLayer(kind, d) * d.Layers * batch * context * bytesPerElement;

    /// <summary>Given (same as the skeleton's): naive MLA attention with materialized per-head keys and values.</summary>
    public static Tensor NaiveAttention(Tensor qNope, Tensor qRope, Tensor latent, Tensor kRope, Tensor wUK, Tensor wUV, double scale)
    {
        var kNope = torch.matmul(latent, wUK.transpose(1, 2));                       // [H, S, Dn] = c W_UKᵀ per head
        var v = torch.matmul(latent, wUV.transpose(1, 2));                           // [H, S, Dv]
        var scores = torch.matmul(qNope, kNope.transpose(1, 2))                      // [H, T, S]
                   + torch.matmul(qRope, kRope.t());                                 // k^R shared by all heads
        var probs = (scores * scale + CausalMask(qNope.shape[1], latent.shape[0])).softmax(-1);
        return torch.matmul(probs, v);                                               // [H, T, Dv]
    }

    public static Tensor AbsorbedAttention(Tensor qNope, Tensor qRope, Tensor latent, Tensor kRope, Tensor wUK, Tensor wUV, double scale)
    {
        var qLatent = torch.matmul(qNope, wUK);                                      // [H, T, Dc] = W_UKᵀ q^C
        var scores = torch.matmul(qLatent, latent.t())                               // [H, T, S]: (W_UKᵀ q)·c = q·(W_UK c)
                   + torch.matmul(qRope, kRope.t());
        var probs = (scores * scale + CausalMask(qNope.shape[1], latent.shape[0])).softmax(-1);
        var oLatent = torch.matmul(probs, latent);                                   // [H, T, Dc]: attend over the latent
        return torch.matmul(oLatent, wUV.transpose(1, 2));                           // [H, T, Dv] = W_UV (Σ p c)
    }

    public static Tensor AppendToLatentCache(Tensor cache, Tensor latent, Tensor kRope, long start)
    {
        long T = latent.shape[1], C = cache.shape[1], Dc = latent.shape[2], Dr = kRope.shape[2];
        if (start < 0 || start + T > C) throw new ArgumentOutOfRangeException(nameof(start), start, $"{T} tokens from slot {start} do not fit capacity {C}");
        cache.narrow(1, start, T).narrow(2, 0, Dc).copy_(latent);                    // [B, T, Dc]
        cache.narrow(1, start, T).narrow(2, Dc, Dr).copy_(kRope);                    // [B, T, Dr]
        return cache.narrow(1, 0, start + T);                                        // [B, start + T, Dc + Dr]
    }

    /// <summary>Given: the additive causal mask [T, S] of T queries that are the last T of S positions.</summary>
    public static Tensor CausalMask(long T, long S)
    {
        var q = torch.arange(S - T, S).unsqueeze(1);                                 // [T, 1] query positions
        var k = torch.arange(S).unsqueeze(0);                                        // [1, S] key positions
        return torch.zeros(T, S).masked_fill(k.gt(q), float.NegativeInfinity);
    }
}
