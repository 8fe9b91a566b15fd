// The shape of a GRPO policy, kept apart from the GRPO options (which say how to train it): a tiny
// DeepSeek-style LM over the character tokenizer, dense SwiGLU or DeepSeekMoE MLPs with loss-free balancing.
// It is a Core.ModelShape (hidden, layers, heads: the same JSON names, validated there) plus the attention kind
// and the MoE knobs; its JSON object keeps its fields flat, attention first.
using System.Text.Json.Serialization;
using WhaleTech.Core;
using WhaleTech.Runtime;

namespace WhaleTech.Grpo;

public sealed record PolicyArchitecture : ModelShape
{
    public PolicyArchitecture() { Hidden = 128; Layers = 4; Heads = 4; }

    /// <summary>A registered attention variant (Core.AttentionVariants): mla, mha, gqa, mqa, …</summary>
    [JsonPropertyName("attention"), JsonPropertyOrder(-1)] public string Attention { get; init; } = "mla";
    /// <summary>Routed experts per layer of a DeepSeekMoE policy (0 = dense SwiGLU MLPs). The MoE policy uses
    /// sigmoid routing, top-`moe_top_k`, one shared expert and DeepSeek-V3's auxiliary-loss-free bias (γ = 1e-3,
    /// updated after every optimizer step of SFT and GRPO).</summary>
    [JsonPropertyName("moe_experts"), JsonPropertyOrder(1)] public int MoeExperts { get; init; }
    [JsonPropertyName("moe_top_k"), JsonPropertyOrder(2)] public int MoeTopK { get; init; } = 2;

    public new PolicyArchitecture Validate()
    {
        if (!AttentionVariants.Contains(Attention)) AttentionVariants.Get(Attention, "attention");   // names the registered ones
        base.Validate();
        Guard.NonNegative("moe_experts", MoeExperts);
        if (MoeExperts > 0) Guard.InRange("moe_top_k", MoeTopK, 1, MoeExperts);
        return this;
    }

    /// <summary>The model config of this policy for a tokenizer of <paramref name="vocab"/> tokens.</summary>
    public ModelConfig Config(int vocab, int bos, int eos)
    {
        var cfg = Tiny(Attention, vocab) with { BosTokenId = bos, EosTokenId = eos };
        return MoeExperts == 0 ? cfg : (cfg with                           // DeepSeekMoE MLPs in every layer
        {
            NRoutedExperts = MoeExperts, NumExpertsPerTok = MoeTopK, NSharedExperts = 1,
            MoeIntermediateSize = Math.Max(8, cfg.IntermediateSize / (MoeTopK + 1) / 8 * 8),   // ≈ dense width when active
            ScoringFunc = "sigmoid", TopkMethod = "noaux_tc", NGroup = 1, TopkGroup = 1, FirstKDenseReplace = 0,
        }).Validate();
    }

    public override string ToString() => $"{Attention}, hidden {Hidden}, {Layers} layers, {Heads} heads" + (MoeExperts > 0 ? $", {MoeExperts} experts top-{MoeTopK}" : "");
}
