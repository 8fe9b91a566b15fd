// The model configuration, read from and written to JSON with the field names of Hugging Face
// DeepSeek-V3's config.json (so checkpoints interoperate), plus WhaleTech's own `whaletech_*` fields.
// Unknown fields are kept and written back unchanged.
//
// Shape legend used across the model code:
//   B batch, T time (new tokens), S cached + new tokens, D hidden_size, H attention heads,
//   Hkv key/value heads, Dh head dim, Dc kv_lora_rank (KV latent), Dq q_lora_rank,
//   Dn qk_nope_head_dim, Dr qk_rope_head_dim, Dv v_head_dim, V vocab, E routed experts, K experts per token.
using System.Text.Json;
using System.Text.Json.Serialization;
using WhaleTech.Runtime;

namespace WhaleTech.Core;

/// <summary>rope_scaling of config.json (DeepSeek uses type "yarn").</summary>
public sealed record RopeScaling
{
    [JsonPropertyName("type")] public string Type { get; init; } = "yarn";
    [JsonPropertyName("factor")] public double Factor { get; init; } = 1.0;
    [JsonPropertyName("original_max_position_embeddings")] public int OriginalMaxPositionEmbeddings { get; init; } = 4096;
    [JsonPropertyName("beta_fast")] public double BetaFast { get; init; } = 32;
    [JsonPropertyName("beta_slow")] public double BetaSlow { get; init; } = 1;
    [JsonPropertyName("mscale")] public double Mscale { get; init; } = 1.0;
    [JsonPropertyName("mscale_all_dim")] public double MscaleAllDim { get; init; } = 0.0;
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; init; }
}

public sealed record ModelConfig
{
    [JsonPropertyName("model_type")] public string ModelType { get; init; } = "deepseek_v3";
    [JsonPropertyName("architectures")] public string[]? Architectures { get; init; } = ["DeepseekV3ForCausalLM"];
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 64;
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 64;
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; } = 172;
    [JsonPropertyName("moe_intermediate_size")] public int MoeIntermediateSize { get; init; } = 32;
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; init; } = 2;
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; init; } = 4;
    [JsonPropertyName("num_key_value_heads")] public int NumKeyValueHeads { get; init; } = 4;
    [JsonPropertyName("n_shared_experts")] public int? NSharedExperts { get; init; }
    [JsonPropertyName("n_routed_experts")] public int? NRoutedExperts { get; init; }
    [JsonPropertyName("routed_scaling_factor")] public double RoutedScalingFactor { get; init; } = 1.0;
    [JsonPropertyName("kv_lora_rank")] public int KvLoraRank { get; init; } = 32;
    [JsonPropertyName("q_lora_rank")] public int? QLoraRank { get; init; }
    [JsonPropertyName("qk_rope_head_dim")] public int QkRopeHeadDim { get; init; } = 8;
    [JsonPropertyName("v_head_dim")] public int VHeadDim { get; init; } = 16;
    [JsonPropertyName("qk_nope_head_dim")] public int QkNopeHeadDim { get; init; } = 16;
    [JsonPropertyName("topk_method")] public string TopkMethod { get; init; } = "noaux_tc";
    [JsonPropertyName("n_group")] public int NGroup { get; init; } = 1;
    [JsonPropertyName("topk_group")] public int TopkGroup { get; init; } = 1;
    [JsonPropertyName("num_experts_per_tok")] public int? NumExpertsPerTok { get; init; }
    [JsonPropertyName("first_k_dense_replace")] public int FirstKDenseReplace { get; init; }
    [JsonPropertyName("norm_topk_prob")] public bool NormTopkProb { get; init; } = true;
    [JsonPropertyName("scoring_func")] public string ScoringFunc { get; init; } = "sigmoid";
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; init; } = "silu";
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; init; } = 512;
    [JsonPropertyName("rms_norm_eps")] public double RmsNormEps { get; init; } = 1e-6;
    [JsonPropertyName("rope_theta")] public double RopeTheta { get; init; } = 10000;
    [JsonPropertyName("rope_scaling")] public RopeScaling? RopeScaling { get; init; }
    [JsonPropertyName("attention_bias")] public bool AttentionBias { get; init; }
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; init; }
    [JsonPropertyName("num_nextn_predict_layers")] public int NumNextnPredictLayers { get; init; }
    [JsonPropertyName("bos_token_id")] public int? BosTokenId { get; init; }
    [JsonPropertyName("eos_token_id")] public int? EosTokenId { get; init; }
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; init; } = 0.02;

    /// <summary>WhaleTech: the registered attention variant (AttentionVariants): "mla" (default, as DeepSeek), "mha", "gqa", "mqa" or one you register.</summary>
    [JsonPropertyName("whaletech_attention")] public string Attention { get; init; } = "mla";
    /// <summary>WhaleTech: head dim of standard attention (MHA/GQA/MQA); null = hidden_size / heads.</summary>
    [JsonPropertyName("whaletech_head_dim")] public int? HeadDim { get; init; }

    /// <summary>Fields of config.json WhaleTech does not use; kept and written back.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; init; }

    // ---- derived -------------------------------------------------------------------------------

    /// <summary>The attention variant whaletech_attention names (an unknown name is an error listing the registered ones).</summary>
    [JsonIgnore] public AttentionVariant AttentionVariant => AttentionVariants.Get(Attention);

    /// <summary>True for multi-head latent attention (the Hugging Face DeepSeek layout).</summary>
    [JsonIgnore] public bool IsMla => string.Equals(Attention?.Trim(), "mla", StringComparison.OrdinalIgnoreCase);

    /// <summary>Head dim of standard attention.</summary>
    [JsonIgnore] public int StandardHeadDim => HeadDim ?? HiddenSize / NumAttentionHeads;

    /// <summary>MLA query/key head dim: Dn + Dr.</summary>
    [JsonIgnore] public int QkHeadDim => QkNopeHeadDim + QkRopeHeadDim;

    /// <summary>True when layer <paramref name="layer"/> has a DeepSeekMoE MLP instead of a dense one.</summary>
    public bool IsMoeLayer(int layer) => NRoutedExperts is > 0 && layer >= FirstKDenseReplace;

    // ---- validation ----------------------------------------------------------------------------

    /// <summary>Largest num_hidden_layers, num_attention_heads and n_routed_experts WhaleTech builds.</summary>
    public const int MaxLayers = 4096, MaxHeads = 4096, MaxExperts = 4096;

    /// <summary>Checks every field; throws <see cref="WhaleArgumentException"/> naming the first bad one.</summary>
    public ModelConfig Validate()
    {
        Guard.Positive("vocab_size", VocabSize);
        Guard.Positive("hidden_size", HiddenSize);
        // Structural limits (DeepSeek-V3: 61 layers, 128 heads, 256 experts): beyond them a model's module tree
        // alone would not fit any machine, whatever its widths.
        Guard.InRange("num_hidden_layers", NumHiddenLayers, 1, MaxLayers);
        Guard.InRange("num_attention_heads", NumAttentionHeads, 1, MaxHeads);
        if (NRoutedExperts is int experts) Guard.InRange("n_routed_experts", experts, 1, MaxExperts);
        if (NSharedExperts is int sharedExperts) Guard.InRange("n_shared_experts", sharedExperts, 0, MaxExperts);
        Guard.InRange("num_nextn_predict_layers", NumNextnPredictLayers, 0, 64);
        Guard.Positive("intermediate_size", IntermediateSize);
        Guard.Positive("num_hidden_layers", NumHiddenLayers);
        Guard.Positive("num_attention_heads", NumAttentionHeads);
        Guard.Positive("max_position_embeddings", MaxPositionEmbeddings);
        Guard.Positive("rms_norm_eps", RmsNormEps);
        Guard.Positive("rope_theta", RopeTheta);
        Guard.NonNegative("num_nextn_predict_layers", NumNextnPredictLayers);
        Guard.Positive("initializer_range", InitializerRange);
        if (HiddenAct != "silu") throw new WhaleArgumentException("hidden_act", HiddenAct, "must be silu (SwiGLU)");
        AttentionVariant.Validate(this);   // unknown names, then the fields that attention uses
        if (NRoutedExperts is not null)
        {
            Guard.Positive("n_routed_experts", NRoutedExperts.Value);
            Guard.Positive("moe_intermediate_size", MoeIntermediateSize);
            Guard.NonNegative("n_shared_experts", NSharedExperts ?? 0);
            int k = NumExpertsPerTok ?? throw new WhaleArgumentException("num_experts_per_tok", null, "must be set when n_routed_experts is set");
            Guard.InRange("num_experts_per_tok", k, 1, NRoutedExperts.Value);
            Guard.Positive("n_group", NGroup);
            if (NRoutedExperts.Value % NGroup != 0)
                throw new WhaleArgumentException("n_group", NGroup, $"must divide n_routed_experts = {NRoutedExperts}");
            Guard.InRange("topk_group", TopkGroup, 1, NGroup);
            if (k > TopkGroup * (NRoutedExperts.Value / NGroup))
                throw new WhaleArgumentException("num_experts_per_tok", k, $"must be ≤ topk_group × experts per group = {TopkGroup * (NRoutedExperts.Value / NGroup)}");
            Guard.OneOf("scoring_func", ScoringFunc, "sigmoid", "softmax");
            Guard.OneOf("topk_method", TopkMethod, "noaux_tc", "greedy", "group_limited_greedy");
            Guard.NonNegative("first_k_dense_replace", FirstKDenseReplace);
            Guard.Positive("routed_scaling_factor", RoutedScalingFactor);
        }
        if (RopeScaling is { } rs)
        {
            Guard.OneOf("rope_scaling.type", rs.Type, "yarn");
            if (!(rs.Factor >= 1) || !double.IsFinite(rs.Factor)) throw new WhaleArgumentException("rope_scaling.factor", rs.Factor, "must be a finite number ≥ 1");
            Guard.Positive("rope_scaling.original_max_position_embeddings", rs.OriginalMaxPositionEmbeddings);
            Guard.Positive("rope_scaling.beta_fast", rs.BetaFast);
            Guard.Positive("rope_scaling.beta_slow", rs.BetaSlow);
            if (!(rs.BetaFast > rs.BetaSlow))
                throw new WhaleArgumentException("rope_scaling.beta_fast", rs.BetaFast, $"must be > beta_slow = {rs.BetaSlow} (YaRN's ramp runs from beta_fast to beta_slow rotations)");
            Guard.NonNegative("rope_scaling.mscale", rs.Mscale);
            Guard.NonNegative("rope_scaling.mscale_all_dim", rs.MscaleAllDim);
        }
        return this;
    }

    // ---- JSON ----------------------------------------------------------------------------------

    static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        RespectNullableAnnotations = true, // "whaletech_attention": null is a JsonException, not a NullReferenceException later
    };

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Parses config.json text; a malformed file or a bad field is a clear WhaleTech error.</summary>
    public static ModelConfig FromJson(string json, string source = "config.json")
    {
        IO.ConfigFile.RejectDuplicateKeys(json, source);
        ModelConfig? cfg;
        try { cfg = JsonSerializer.Deserialize<ModelConfig>(json, JsonOptions); }
        catch (JsonException e) { throw new WhaleFormatException(source, $"not a valid config.json ({e.Message})", e); }
        catch (NotSupportedException e) { throw new WhaleFormatException(source, $"not a valid config.json ({e.Message})", e); }
        catch (InvalidOperationException e) { throw new WhaleFormatException(source, $"not a valid config.json ({e.Message})", e); }
        catch (ArgumentException e) { throw new WhaleFormatException(source, $"not a valid config.json ({e.Message})", e); } // e.g. lone UTF-16 surrogates
        if (cfg is null) throw new WhaleFormatException(source, "config.json holds null");
        if (cfg.QLoraRank == 0) cfg = cfg with { QLoraRank = null }; // DeepSeek's inference/configs: q_lora_rank 0 = no query compression
        try { return cfg.Validate(); }
        catch (WhaleArgumentException e) { throw new WhaleFormatException(source, e.Message, e); }
    }

    public static ModelConfig Load(string path)
    {
        var text = IO.ConfigFile.ReadText("config", path);
        IO.ConfigFile.RejectDuplicateKeys(text, path);
        try { using var doc = JsonDocument.Parse(text, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }); IO.ConfigFile.CheckFields(doc.RootElement, path); }
        catch (JsonException e) { throw new WhaleFormatException(path, $"not a valid config.json ({e.Message})", e); }
        return FromJson(text, path);
    }

    public void Save(string path) => IO.AtomicFile.WriteAllText(path, ToJson());

    // ---- tiny presets for tests, samples and the tour -------------------------------------------

    /// <summary>A tiny dense model of the given attention kind, for CPU tests and demos.</summary>
    public static ModelConfig Tiny(string attention = "mla", int vocab = 64, int hidden = 64, int layers = 2, int heads = 4) => TinyArguments(attention, vocab, hidden, layers, heads) ?? new ModelConfig
    {
        VocabSize = vocab, HiddenSize = hidden, IntermediateSize = hidden * 8 / 3 / 8 * 8 + 8, NumHiddenLayers = layers,
        NumAttentionHeads = heads, NumKeyValueHeads = attention == "gqa" ? Math.Max(1, heads / 2) : heads,
        KvLoraRank = hidden / 2, QLoraRank = null, QkNopeHeadDim = hidden / heads, QkRopeHeadDim = hidden / heads / 2,
        VHeadDim = hidden / heads, Attention = attention, MaxPositionEmbeddings = 256,
    }.Validate();

    /// <summary>Tiny's own arguments, checked before any division by them (always null or a throw).</summary>
    static ModelConfig? TinyArguments(string attention, int vocab, int hidden, int layers, int heads)
    {
        AttentionVariants.Get(attention, "attention");   // a registered variant
        Guard.Positive("vocab", vocab);
        Guard.Positive("hidden", hidden);
        Guard.Positive("layers", layers);
        Guard.Positive("heads", heads);
        if (hidden % heads != 0 || hidden / heads < 4 || (hidden / heads) % 4 != 0)
            throw new WhaleArgumentException("heads", heads, $"must divide hidden = {hidden} into heads of a multiple of 4 dimensions (hidden / heads ≥ 4)");
        return null;
    }
}
