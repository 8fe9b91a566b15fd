// Multi-head latent attention (DeepSeek-V2 §2.1, DeepSeek-V3 §2.1.1) as a registered attention variant.
// RoPE rotates only the decoupled Dr = qk_rope_head_dim part; the default (absorbed) inference path caches the
// latent c^KV and the shared k^R: Dc + Dr elements per token per layer (DeepSeek-V2 Table 1).
using WhaleTech.Core;
using WhaleTech.Runtime;

namespace WhaleTech.Attention;

public sealed class MlaVariant : AttentionVariant
{
    public override string Name => "mla";
    public override string Summary => "multi-head latent attention: low-rank KV latent + decoupled RoPE key (DeepSeek-V2/V3)";

    public override void Validate(ModelConfig cfg)
    {
        Guard.Positive("kv_lora_rank", cfg.KvLoraRank);
        if (cfg.QLoraRank is not null) Guard.Positive("q_lora_rank", cfg.QLoraRank.Value);
        Guard.Positive("qk_rope_head_dim", cfg.QkRopeHeadDim);
        Guard.Positive("qk_nope_head_dim", cfg.QkNopeHeadDim);
        Guard.Positive("v_head_dim", cfg.VHeadDim);
        if (cfg.QkRopeHeadDim % 2 != 0)
            throw new WhaleArgumentException("qk_rope_head_dim", cfg.QkRopeHeadDim, "must be even (RoPE rotates pairs)");
    }

    public override int RopeDim(ModelConfig cfg) => cfg.QkRopeHeadDim;

    public override long KvElementsPerTokenPerLayer(ModelConfig cfg) => (long)cfg.KvLoraRank + cfg.QkRopeHeadDim;

    public override AttentionLayer Create(ModelConfig cfg, RotaryEmbedding rope, LinearFactory linear, string prefix)
        => new MultiHeadLatentAttention(cfg, rope, linear, prefix);
}
