// Built-in configurations of published models, with the values of their Hugging Face config.json
// (deepseek-ai/DeepSeek-V3, deepseek-ai/DeepSeek-V2, deepseek-ai/DeepSeek-V2-Lite), plus two standard-
// attention references: DeepSeek LLM 67B (the baseline of DeepSeek-V2's "93.3% less KV cache", V2 §1)
// and a Llama-3-70B-style GQA model. They are used for KV accounting (`whale kv`) and benchmark shapes;
// nothing here builds a full-size model.
//
// Shape legend: D hidden_size, H heads, Hkv KV heads, Dh standard head dim, Dc kv_lora_rank,
// Dq q_lora_rank, Dn qk_nope_head_dim, Dr qk_rope_head_dim, Dv v_head_dim.
using WhaleTech.Runtime;

namespace WhaleTech.Core;

public static class ModelPresets
{
    /// <summary>Names accepted by <see cref="Get"/> (and `whale kv --model`).</summary>
    public static IReadOnlyList<string> Names { get; } = ["deepseek-v3", "deepseek-v2", "deepseek-v2-lite", "deepseek-67b", "llama3-70b"];

    /// <summary>The preset called <paramref name="name"/>; a clear error listing the names otherwise.</summary>
    public static ModelConfig Get(string name) => name.Trim().ToLowerInvariant() switch
    {
        "deepseek-v3" => DeepSeekV3,
        "deepseek-v2" => DeepSeekV2,
        "deepseek-v2-lite" => DeepSeekV2Lite,
        "deepseek-67b" => DeepSeek67B,
        "llama3-70b" => Llama3_70B,
        _ => throw new WhaleArgumentException("model", name, "must be one of " + string.Join(", ", Names) + ", or a path to a config.json"),
    };

    /// <summary>A preset name, or a path to a config.json.</summary>
    public static ModelConfig Resolve(string nameOrPath)
        => Names.Contains(nameOrPath.Trim().ToLowerInvariant()) ? Get(nameOrPath) :
           File.Exists(nameOrPath) ? ModelConfig.Load(nameOrPath) : Get(nameOrPath);

    /// <summary>deepseek-ai/DeepSeek-V3 (671B total, 37B active): D 7168, 61 layers, H 128, Dq 1536, Dc 512, Dn 128, Dr 64, Dv 128.</summary>
    public static ModelConfig DeepSeekV3 { get; } = new ModelConfig
    {
        ModelType = "deepseek_v3", Architectures = ["DeepseekV3ForCausalLM"],
        VocabSize = 129280, HiddenSize = 7168, IntermediateSize = 18432, MoeIntermediateSize = 2048,
        NumHiddenLayers = 61, NumAttentionHeads = 128, NumKeyValueHeads = 128,
        NSharedExperts = 1, NRoutedExperts = 256, RoutedScalingFactor = 2.5, NumExpertsPerTok = 8,
        TopkMethod = "noaux_tc", NGroup = 8, TopkGroup = 4, FirstKDenseReplace = 3, NormTopkProb = true, ScoringFunc = "sigmoid",
        KvLoraRank = 512, QLoraRank = 1536, QkRopeHeadDim = 64, QkNopeHeadDim = 128, VHeadDim = 128,
        MaxPositionEmbeddings = 163840, RmsNormEps = 1e-6, RopeTheta = 10000,
        RopeScaling = new RopeScaling { Type = "yarn", Factor = 40, OriginalMaxPositionEmbeddings = 4096, BetaFast = 32, BetaSlow = 1, Mscale = 1.0, MscaleAllDim = 1.0 },
        NumNextnPredictLayers = 1, BosTokenId = 0, EosTokenId = 1, Attention = "mla", HeadDim = 128,
    }.Validate();

    /// <summary>deepseek-ai/DeepSeek-V2 (236B total, 21B active): D 5120, 60 layers, H 128, Dq 1536, Dc 512, Dn 128, Dr 64, Dv 128.</summary>
    public static ModelConfig DeepSeekV2 { get; } = new ModelConfig
    {
        ModelType = "deepseek_v2", Architectures = ["DeepseekV2ForCausalLM"],
        VocabSize = 102400, HiddenSize = 5120, IntermediateSize = 12288, MoeIntermediateSize = 1536,
        NumHiddenLayers = 60, NumAttentionHeads = 128, NumKeyValueHeads = 128,
        NSharedExperts = 2, NRoutedExperts = 160, RoutedScalingFactor = 16.0, NumExpertsPerTok = 6,
        TopkMethod = "group_limited_greedy", NGroup = 8, TopkGroup = 3, FirstKDenseReplace = 1, NormTopkProb = false, ScoringFunc = "softmax",
        KvLoraRank = 512, QLoraRank = 1536, QkRopeHeadDim = 64, QkNopeHeadDim = 128, VHeadDim = 128,
        MaxPositionEmbeddings = 163840, RmsNormEps = 1e-6, RopeTheta = 10000,
        RopeScaling = new RopeScaling { Type = "yarn", Factor = 40, OriginalMaxPositionEmbeddings = 4096, BetaFast = 32, BetaSlow = 1, Mscale = 0.707, MscaleAllDim = 0.707 },
        BosTokenId = 100000, EosTokenId = 100001, Attention = "mla", HeadDim = 128,
    }.Validate();

    /// <summary>deepseek-ai/DeepSeek-V2-Lite (15.7B total, 2.4B active): D 2048, 27 layers, H 16, no query compression, Dc 512, Dn 128, Dr 64, Dv 128.</summary>
    public static ModelConfig DeepSeekV2Lite { get; } = new ModelConfig
    {
        ModelType = "deepseek_v2", Architectures = ["DeepseekV2ForCausalLM"],
        VocabSize = 102400, HiddenSize = 2048, IntermediateSize = 10944, MoeIntermediateSize = 1408,
        NumHiddenLayers = 27, NumAttentionHeads = 16, NumKeyValueHeads = 16,
        NSharedExperts = 2, NRoutedExperts = 64, RoutedScalingFactor = 1.0, NumExpertsPerTok = 6,
        TopkMethod = "greedy", NGroup = 1, TopkGroup = 1, FirstKDenseReplace = 1, NormTopkProb = false, ScoringFunc = "softmax",
        KvLoraRank = 512, QLoraRank = null, QkRopeHeadDim = 64, QkNopeHeadDim = 128, VHeadDim = 128,
        MaxPositionEmbeddings = 163840, RmsNormEps = 1e-6, RopeTheta = 10000,
        RopeScaling = new RopeScaling { Type = "yarn", Factor = 40, OriginalMaxPositionEmbeddings = 4096, BetaFast = 32, BetaSlow = 1, Mscale = 0.707, MscaleAllDim = 0.707 },
        BosTokenId = 100000, EosTokenId = 100001, Attention = "mla", HeadDim = 128,
    }.Validate();

    /// <summary>DeepSeek LLM 67B (dense, GQA): 95 layers, D 8192, H 64, Hkv 8, Dh 128 — the model DeepSeek-V2's
    /// 93.3% KV-cache reduction is measured against (V2 §1 and Figure 1b).</summary>
    public static ModelConfig DeepSeek67B { get; } = new ModelConfig
    {
        ModelType = "llama", Architectures = ["LlamaForCausalLM"],
        VocabSize = 102400, HiddenSize = 8192, IntermediateSize = 22016, NumHiddenLayers = 95,
        NumAttentionHeads = 64, NumKeyValueHeads = 8, MaxPositionEmbeddings = 4096, RmsNormEps = 1e-6, RopeTheta = 10000,
        BosTokenId = 100000, EosTokenId = 100001, Attention = "gqa", HeadDim = 128,
    }.Validate();

    /// <summary>A Llama-3-70B-style GQA reference: 80 layers, D 8192, H 64, Hkv 8, Dh 128.</summary>
    public static ModelConfig Llama3_70B { get; } = new ModelConfig
    {
        ModelType = "llama", Architectures = ["LlamaForCausalLM"],
        VocabSize = 128256, HiddenSize = 8192, IntermediateSize = 28672, NumHiddenLayers = 80,
        NumAttentionHeads = 64, NumKeyValueHeads = 8, MaxPositionEmbeddings = 8192, RmsNormEps = 1e-5, RopeTheta = 500000,
        BosTokenId = 128000, EosTokenId = 128001, Attention = "gqa", HeadDim = 128,
    }.Validate();
}
