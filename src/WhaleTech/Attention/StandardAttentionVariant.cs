// MHA, GQA and MQA as registered attention variants: one StandardAttention layer, three rules for the number
// of key/value heads (H, num_key_value_heads, 1). RoPE rotates the whole head; the cache holds K and V:
// 2 · Hkv · Dh elements per token per layer (DeepSeek-V2 Table 1).
using WhaleTech.Core;
using WhaleTech.Runtime;

namespace WhaleTech.Attention;

public sealed class StandardAttentionVariant : AttentionVariant
{
    public static readonly StandardAttentionVariant Mha = new("mha", "multi-head attention: K/V for every head (Hkv = H)", c => c.NumAttentionHeads);
    public static readonly StandardAttentionVariant Gqa = new("gqa", "grouped-query attention: num_key_value_heads K/V heads shared by groups of query heads", c => c.NumKeyValueHeads);
    public static readonly StandardAttentionVariant Mqa = new("mqa", "multi-query attention: one K/V head for all query heads (Hkv = 1)", _ => 1);

    readonly Func<ModelConfig, int> _kvHeads;

    public StandardAttentionVariant(string name, string summary, Func<ModelConfig, int> kvHeads)
    {
        Name = name;
        Summary = summary;
        _kvHeads = kvHeads;
    }

    public override string Name { get; }
    public override string Summary { get; }

    /// <summary>Key/value heads of this variant for <paramref name="cfg"/>.</summary>
    public int KvHeads(ModelConfig cfg) => _kvHeads(cfg);

    /// <summary>Key/value heads of a standard-attention config (MHA: H, GQA: num_key_value_heads, MQA: 1).</summary>
    public static int KvHeadsOf(ModelConfig cfg) => AttentionVariants.Get(cfg.Attention) is StandardAttentionVariant s ? s.KvHeads(cfg)
        : throw new WhaleArgumentException("whaletech_attention", cfg.Attention, "must be a standard attention (mha, gqa, mqa) to have key/value heads");

    public override void Validate(ModelConfig cfg)
    {
        if (cfg.HeadDim is null && cfg.HiddenSize % cfg.NumAttentionHeads != 0)
            throw new WhaleArgumentException("num_attention_heads", cfg.NumAttentionHeads, $"must divide hidden_size = {cfg.HiddenSize} (or set whaletech_head_dim)");
        if (cfg.HeadDim is not null) Guard.Positive("whaletech_head_dim", cfg.HeadDim.Value);
        if (cfg.StandardHeadDim % 2 != 0)
            throw new WhaleArgumentException(cfg.HeadDim is null ? "hidden_size / num_attention_heads" : "whaletech_head_dim", cfg.StandardHeadDim, "must be even (RoPE rotates pairs of the head)");
        int kv = KvHeads(cfg);
        Guard.Positive("num_key_value_heads", kv);
        if (cfg.NumAttentionHeads % kv != 0)
            throw new WhaleArgumentException("num_key_value_heads", kv, $"must divide num_attention_heads = {cfg.NumAttentionHeads}");
    }

    public override int RopeDim(ModelConfig cfg) => cfg.StandardHeadDim;

    public override long KvElementsPerTokenPerLayer(ModelConfig cfg) => 2L * KvHeads(cfg) * cfg.StandardHeadDim;

    public override AttentionLayer Create(ModelConfig cfg, RotaryEmbedding rope, LinearFactory linear, string prefix)
        => new StandardAttention(cfg, KvHeads(cfg), rope, linear, prefix);
}
