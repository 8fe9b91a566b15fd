// KV-cache accounting: how many elements and bytes each attention kind keeps per token, and what that
// means for a batch × context and a memory budget. The formulas are DeepSeek-V2 Table 1 (§2.1.4):
//
//   MHA               2 · n_h · d_h · l           (K and V of every head)
//   GQA (n_g groups)  2 · n_g · d_h · l
//   MQA               2 · d_h · l
//   MLA latent        (d_c + d_h^R) · l           (DeepSeek-V2 eq. 41/43: c^KV and the shared k^R; ≈ 9/2 · d_h · l for d_c = 4 d_h, d_h^R = d_h/2)
//   MLA materialized  n_h · (d_h + d_h^R + d_h) · l   (per-head K = [k^C; k^R] and V, what the naive path caches)
//
// The caches the model allocates (StandardAttention.KvCache, MultiHeadLatentAttention.MaterializedCache /
// LatentCache) have exactly these sizes (tested in tests/WhaleTech.Tests/Attention/KvAccountingTests.cs).
//
// Shape legend: l layers, n_h = H heads, n_g = Hkv KV heads, d_h = Dh head dim, d_c = Dc kv_lora_rank,
// d_h^R = Dr qk_rope_head_dim, Dn qk_nope_head_dim, Dv v_head_dim, B batch, C context (tokens).
using WhaleTech.Runtime;
using WhaleTech.Core;

namespace WhaleTech.Attention;

/// <summary>What a layer caches per token.</summary>
public enum KvLayout { Mha, Gqa, Mqa, MlaMaterialized, MlaLatent }

/// <summary>The dimensions KV accounting needs. For a standard-attention config the MLA dims follow
/// DeepSeek-V2 Table 1's convention d_c = 4 d_h, d_h^R = d_h/2, Dn = Dv = d_h ("if this model used MLA").</summary>
public sealed record KvShape(int Layers, int Heads, int HeadDim, int KvHeads, int LatentDim, int RopeDim, int NopeDim, int ValueDim)
{
    /// <summary>From a config. <paramref name="gqaKvHeads"/> is the n_g of the GQA row: the config's own
    /// num_key_value_heads when it is a GQA model, else 8 (as Llama-3-70B / DeepSeek 67B), capped at H.</summary>
    public static KvShape From(ModelConfig cfg, int? gqaKvHeads = null)
    {
        bool mla = cfg.IsMla;
        // Standard head dim: whaletech_head_dim, else v_head_dim for MLA configs (DeepSeek's d_h = 128), else D/H.
        int dh = cfg.HeadDim ?? (mla ? cfg.VHeadDim : cfg.StandardHeadDim);
        int ng = gqaKvHeads ?? (cfg.AttentionVariant == StandardAttentionVariant.Gqa ? cfg.NumKeyValueHeads : Math.Min(8, cfg.NumAttentionHeads));
        if (ng <= 0 || cfg.NumAttentionHeads % ng != 0)
            throw new WhaleArgumentException("kv heads", ng, $"must be a positive divisor of num_attention_heads = {cfg.NumAttentionHeads}");
        return mla
            ? new KvShape(cfg.NumHiddenLayers, cfg.NumAttentionHeads, dh, ng, cfg.KvLoraRank, cfg.QkRopeHeadDim, cfg.QkNopeHeadDim, cfg.VHeadDim)
            : new KvShape(cfg.NumHiddenLayers, cfg.NumAttentionHeads, dh, ng, 4 * dh, dh / 2, dh, dh);
    }
}

/// <summary>One row of `whale kv`.</summary>
public sealed record KvRow(
    string Attention, KvLayout Layout, string Formula,
    long ElementsPerTokenPerLayer, double BytesPerTokenPerLayer,
    long ElementsPerToken, double BytesPerToken,
    double CacheBytes, long MaxContext);

public static class KvAccounting
{
    /// <summary>dtypes `--dtype` accepts, with their bits per element.</summary>
    public static IReadOnlyDictionary<string, int> DtypeBits { get; } = new Dictionary<string, int>
    {
        ["bf16"] = 16, ["fp16"] = 16, ["fp32"] = 32, ["fp8"] = 8,
    };

    public static double BytesPerElement(string dtype)
        => DtypeBits.TryGetValue(dtype.Trim().ToLowerInvariant(), out int bits) ? bits / 8.0
           : throw new WhaleArgumentException("dtype", dtype, "must be one of " + string.Join(", ", DtypeBits.Keys));

    /// <summary>Elements cached per token per layer (DeepSeek-V2 Table 1 without the factor l).</summary>
    public static long ElementsPerTokenPerLayer(KvShape s, KvLayout layout) => layout switch
    {
        KvLayout.Mha => 2L * s.Heads * s.HeadDim,
        KvLayout.Gqa => 2L * s.KvHeads * s.HeadDim,
        KvLayout.Mqa => 2L * s.HeadDim,
        KvLayout.MlaLatent => (long)s.LatentDim + s.RopeDim,
        KvLayout.MlaMaterialized => (long)s.Heads * (s.NopeDim + s.RopeDim + s.ValueDim),
        _ => throw new ArgumentOutOfRangeException(nameof(layout)),
    };

    /// <summary>Elements cached per token for the whole model (all l layers).</summary>
    public static long ElementsPerToken(KvShape s, KvLayout layout) => ElementsPerTokenPerLayer(s, layout) * s.Layers;

    /// <summary>Bytes of the cache of <paramref name="batch"/> sequences × <paramref name="context"/> tokens.</summary>
    public static double CacheBytes(KvShape s, KvLayout layout, long batch, long context, double bytesPerElement)
        => (double)ElementsPerToken(s, layout) * batch * context * bytesPerElement;

    /// <summary>The largest context whose cache for <paramref name="batch"/> sequences fits <paramref name="budgetBytes"/>
    /// (KV cache only: weights and activations are not counted).</summary>
    public static long MaxContext(KvShape s, KvLayout layout, long batch, double budgetBytes, double bytesPerElement)
    {
        Guard.Positive("batch", batch);
        double perSequenceToken = ElementsPerToken(s, layout) * bytesPerElement * batch;
        return (long)Math.Floor(Guard.NonNegative("budget", budgetBytes) / perSequenceToken);
    }

    /// <summary>The layout a model's cache has: its attention kind, and for MLA the inference path
    /// (naive caches per-head K/V, absorbed and auto cache the latent).</summary>
    /// A registered variant outside Table 1 has no layout: its own count is AttentionVariant.KvElementsPerTokenPerLayer.
    public static KvLayout LayoutOf(ModelConfig cfg, MlaMode mlaMode = MlaMode.Auto) => cfg.AttentionVariant switch
    {
        MlaVariant => mlaMode == MlaMode.Naive ? KvLayout.MlaMaterialized : KvLayout.MlaLatent,
        var v when v == StandardAttentionVariant.Mha => KvLayout.Mha,
        var v when v == StandardAttentionVariant.Gqa => KvLayout.Gqa,
        var v when v == StandardAttentionVariant.Mqa => KvLayout.Mqa,
        var v => throw new WhaleArgumentException("whaletech_attention", v.Name, "has no DeepSeek-V2 Table 1 layout (its cache size is AttentionVariant.KvElementsPerTokenPerLayer)"),
    };

    /// <summary>Display name of a layout for a shape ("GQA-8").</summary>
    public static string Name(KvShape s, KvLayout layout) => layout switch
    {
        KvLayout.Mha => "MHA",
        KvLayout.Gqa => $"GQA-{s.KvHeads}",
        KvLayout.Mqa => "MQA",
        KvLayout.MlaMaterialized => "MLA materialized",
        _ => "MLA latent",
    };

    /// <summary>Table 1 formula of a layout, with this shape's numbers filled in.</summary>
    public static string Formula(KvShape s, KvLayout layout) => layout switch
    {
        KvLayout.Mha => $"2·n_h·d_h = 2·{s.Heads}·{s.HeadDim}",
        KvLayout.Gqa => $"2·n_g·d_h = 2·{s.KvHeads}·{s.HeadDim}",
        KvLayout.Mqa => $"2·d_h = 2·{s.HeadDim}",
        KvLayout.MlaMaterialized => $"n_h·(Dn+Dr+Dv) = {s.Heads}·({s.NopeDim}+{s.RopeDim}+{s.ValueDim})",
        _ => $"d_c + d_h^R = {s.LatentDim}+{s.RopeDim}",
    };

    /// <summary>The five rows of `whale kv` for one shape.</summary>
    public static IReadOnlyList<KvRow> Table(KvShape s, string dtype = "bf16", long batch = 1, long context = 4096, double budgetBytes = 80.0 * (1L << 30))
    {
        double bpe = BytesPerElement(dtype);
        Guard.Positive("batch", batch);
        Guard.Positive("context", context);
        return Enum.GetValues<KvLayout>().Select(layout => new KvRow(
            Name(s, layout), layout, Formula(s, layout),
            ElementsPerTokenPerLayer(s, layout), ElementsPerTokenPerLayer(s, layout) * bpe,
            ElementsPerToken(s, layout), ElementsPerToken(s, layout) * bpe,
            CacheBytes(s, layout, batch, context, bpe), MaxContext(s, layout, batch, budgetBytes, bpe))).ToList();
    }
}
