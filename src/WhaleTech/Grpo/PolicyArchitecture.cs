// The shape of a GRPO policy, kept apart from the GRPO options (which say how to train it): a tiny
// DeepSeek-style LM over the character tokenizer, dense SwiGLU or DeepSeekMoE MLPs with loss-free balancing.
using System.Text.Json.Serialization;
using WhaleTech.Core;
using WhaleTech.Runtime;

namespace WhaleTech.Grpo;

public sealed record PolicyArchitecture
{
    /// <summary>A registered attention variant (Core.AttentionVariants): mla, mha, gqa, mqa, …</summary>
    [JsonPropertyName("attention")] public string Attention { get; init; } = "mla";
    [JsonPropertyName("hidden")] public int Hidden { get; init; } = 128;
    [JsonPropertyName("layers")] public int Layers { get; init; } = 4;
    [JsonPropertyName("heads")] public int Heads { get; init; } = 4;
    /// <summary>Routed experts per layer of a DeepSeekMoE policy (0 = dense SwiGLU MLPs). The MoE policy uses
    /// sigmoid routing, top-`moe_top_k`, one shared expert and DeepSeek-V3's auxiliary-loss-free bias (γ = 1e-3,
    /// updated after every optimizer step of SFT and GRPO).</summary>
    [JsonPropertyName("moe_experts")] public int MoeExperts { get; init; }
    [JsonPropertyName("moe_top_k")] public int MoeTopK { get; init; } = 2;

    public PolicyArchitecture Validate()
    {
        if (!AttentionVariants.Contains(Attention)) AttentionVariants.Get(Attention, "attention");   // names the registered ones
        Guard.Positive("hidden", Hidden); Guard.Positive("layers", Layers); Guard.Positive("heads", Heads);
        Guard.NonNegative("moe_experts", MoeExperts);
        if (MoeExperts > 0) Guard.InRange("moe_top_k", MoeTopK, 1, MoeExperts);
        return this;
    }

    /// <summary>The model config of this policy for a tokenizer of <paramref name="vocab"/> tokens.</summary>
    public ModelConfig Config(int vocab, int bos, int eos)
    {
        var cfg = ModelConfig.Tiny(Attention, vocab, Hidden, Layers, Heads) with { BosTokenId = bos, EosTokenId = eos };
        return MoeExperts == 0 ? cfg : (cfg with                           // DeepSeekMoE MLPs in every layer
        {
            NRoutedExperts = MoeExperts, NumExpertsPerTok = MoeTopK, NSharedExperts = 1,
            MoeIntermediateSize = Math.Max(8, cfg.IntermediateSize / (MoeTopK + 1) / 8 * 8),   // ≈ dense width when active
            ScoringFunc = "sigmoid", TopkMethod = "noaux_tc", NGroup = 1, TopkGroup = 1, FirstKDenseReplace = 0,
        }).Validate();
    }

    public override string ToString() => $"{Attention}, hidden {Hidden}, {Layers} layers, {Heads} heads" + (MoeExperts > 0 ? $", {MoeExperts} experts top-{MoeTopK}" : "");
}
