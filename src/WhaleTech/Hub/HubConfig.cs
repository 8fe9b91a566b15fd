// config.json of Hugging Face DeepSeek-V2 / V3 checkpoints, as they are found on the Hub and as transformers
// writes them, read into a ModelConfig; and the config.json WhaleTech writes so transformers loads it.
//
// Reading accepts every spelling in use (docs/hf-interop.md):
//   rope_scaling {"type": "yarn", ...} + rope_theta      Hub files (transformers 4.x era)
//   rope_scaling {"rope_type": "yarn", ...}              transformers ≥ 4.45
//   rope_parameters {"rope_type", "rope_theta", ...}      transformers 5 (rope_theta moves inside)
//   "rope_type": "default"                                 no scaling
//   "n_group" / "topk_group": null                         transformers' DeepseekV2 defaults → 1
//   "rope_interleave": false                               non-interleaved RoPE weights (permuted on load)
// Unknown fields (aux_loss_alpha, seq_aux, ep_size, quantization_config, ...) stay in ModelConfig.Extra.
//
// Writing (ForTransformers): model_type/architectures by routing (DeepseekV3ForCausalLM implements only
// sigmoid + noaux_tc; softmax / greedy / group_limited_greedy need DeepseekV2ForCausalLM), torch_dtype,
// rope_interleave true (WhaleTech's weights are DeepSeek's interleaved layout), quantization_config only for
// FP8 weights, auto_map dropped (the remote-code .py files are not in a WhaleTech folder). whaletech_* fields
// stay: transformers keeps unknown config keys as plain attributes and ignores them.
using System.Text.Json;
using System.Text.Json.Nodes;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

using WhaleTech.IO;

namespace WhaleTech.Hub;

public static class HubConfig
{
    public const string FileName = "config.json";

    /// <summary>Reads <paramref name="folder"/>/config.json (or a config.json path).</summary>
    public static ModelConfig Load(string folderOrFile)
    {
        var path = Directory.Exists(folderOrFile) ? Path.Combine(folderOrFile, FileName) : folderOrFile;
        if (!File.Exists(path)) throw new WhaleArgumentException("config", path, "must name a checkpoint folder with config.json, or a config.json file");
        var text = ConfigFile.ReadText("config", path);
        ConfigFile.RejectDuplicateKeys(text, path);
        using (var doc = ParseDocument(text, path)) ConfigFile.CheckFields(doc.RootElement, path);
        return Parse(text, path);
    }

    /// <summary>Parses config.json text in any of the spellings above.</summary>
    static JsonDocument ParseDocument(string text, string source)
    {
        try { return JsonDocument.Parse(text, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new WhaleFormatException(source, $"not valid JSON ({e.Message})", e); }
    }

    public static ModelConfig Parse(string json, string source = FileName)
    {
        ConfigFile.RejectDuplicateKeys(json, source);
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }) as JsonObject
                ?? throw new WhaleFormatException(source, "config.json must hold a JSON object");
        }
        catch (JsonException e) { throw new WhaleFormatException(source, $"not valid JSON ({e.Message})", e); }
        Normalize(root, source);
        return ModelConfig.FromJson(root.ToJsonString(), source);
    }

    static void Normalize(JsonObject root, string source)
    {
        // transformers 5: rope_parameters holds rope_theta and the scaling settings.
        if (root["rope_parameters"] is JsonObject rp)
        {
            root.Remove("rope_parameters");
            if (rp["rope_theta"] is JsonNode theta && root["rope_theta"] is null) root["rope_theta"] = theta.DeepClone();
            rp.Remove("rope_theta");
            if (root["rope_scaling"] is null) root["rope_scaling"] = rp;
        }
        if (root["rope_scaling"] is JsonObject rs)
        {
            var type = (rs["rope_type"] ?? rs["type"])?.GetValue<string>() ?? "default";
            rs.Remove("rope_type");
            if (type == "default") root["rope_scaling"] = null;
            else rs["type"] = type;
        }
        foreach (var key in new[] { "n_group", "topk_group" })
            if (root.ContainsKey(key) && root[key] is null) root[key] = 1;
        if (root["moe_layer_freq"] is JsonNode freq && freq.GetValueKind() == JsonValueKind.Number && freq.GetValue<double>() != 1)
            throw new WhaleFormatException(source, $"moe_layer_freq = {freq} is not supported (only 1: every layer from first_k_dense_replace on is MoE, as in every released DeepSeek-V2/V3)");
    }

    /// <summary>False when the checkpoint stores RoPE dims in transformers' non-interleaved order ("rope_interleave": false).</summary>
    public static bool RopeInterleaved(ModelConfig cfg)
        => cfg.Extra is null || !cfg.Extra.TryGetValue("rope_interleave", out var v) || v.ValueKind != JsonValueKind.False;

    /// <summary>The FP8 block size of quantization_config.weight_block_size ([b, b]), or null when the config has none.</summary>
    public static int? Fp8BlockSize(ModelConfig cfg, string source = FileName)
    {
        if (cfg.Extra is null || !cfg.Extra.TryGetValue("quantization_config", out var q) || q.ValueKind != JsonValueKind.Object) return null;
        if (!q.TryGetProperty("weight_block_size", out var wbs) || wbs.ValueKind != JsonValueKind.Array) return Fp8BlockDequant.BlockSize;
        var sizes = wbs.EnumerateArray().Select(e => e.TryGetInt32(out var i) ? i : -1).ToArray();
        if (sizes.Length != 2 || sizes[0] != sizes[1] || sizes[0] <= 0)
            throw new WhaleFormatException(source, $"quantization_config.weight_block_size = {wbs.GetRawText()} is not supported (need square blocks [b, b])");
        return sizes[0];
    }

    /// <summary>True when transformers' DeepseekV3 computes this routing (sigmoid scores, noaux_tc selection).</summary>
    public static bool IsV3Routing(ModelConfig cfg) => cfg.NRoutedExperts is null || (cfg.ScoringFunc == "sigmoid" && cfg.TopkMethod == "noaux_tc");

    /// <summary>The config WhaleTech writes next to its weights, for transformers' DeepseekV3/V2ForCausalLM.</summary>
    public static ModelConfig ForTransformers(ModelConfig cfg, ScalarType dtype, int? fp8BlockSize = null)
    {
        var extra = cfg.Extra is null ? new Dictionary<string, JsonElement>() : new Dictionary<string, JsonElement>(cfg.Extra);
        foreach (var stale in new[] { "quantization_config", "auto_map", "rope_parameters", "transformers_version" }) extra.Remove(stale);
        extra["torch_dtype"] = JsonSerializer.SerializeToElement(TorchDTypeName(dtype));
        if (extra.ContainsKey("dtype")) extra["dtype"] = JsonSerializer.SerializeToElement(TorchDTypeName(dtype));
        extra["rope_interleave"] = JsonSerializer.SerializeToElement(true);
        if (fp8BlockSize is int b)
            extra["quantization_config"] = JsonSerializer.SerializeToElement(new Dictionary<string, object>
            {
                ["activation_scheme"] = "dynamic", ["fmt"] = "e4m3", ["quant_method"] = "fp8", ["weight_block_size"] = new[] { b, b },
            });
        bool v3 = IsV3Routing(cfg);
        return cfg with
        {
            ModelType = v3 ? "deepseek_v3" : "deepseek_v2",
            Architectures = [v3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"],
            // transformers makes every layer ≥ first_k_dense_replace an MoE layer whether or not n_routed_experts is set.
            FirstKDenseReplace = cfg.NRoutedExperts is null ? cfg.NumHiddenLayers : cfg.FirstKDenseReplace,
            Extra = extra,
        };
    }

    /// <summary>Where transformers would compute something else than WhaleTech for this config (empty = none known).</summary>
    public static IReadOnlyList<string> TransformersCaveats(ModelConfig cfg)
    {
        var notes = new List<string>();
        if (!cfg.IsMla)
            notes.Add($"whaletech_attention = {cfg.Attention}: transformers' DeepSeek classes implement MLA only; this checkpoint loads in WhaleTech, not in transformers");
        if (cfg.NRoutedExperts is not null)
        {
            bool v3 = IsV3Routing(cfg);
            if (v3 && cfg.NGroup > 1)
                notes.Add("transformers' DeepseekV3 masks experts outside the chosen groups with 0.0 (WhaleTech and DeepSeek: −inf); selection differs only when fewer than K biased scores in the chosen groups are positive");
            if (v3 && cfg.NRoutedExperts / cfg.NGroup < 2)
                notes.Add("transformers' DeepseekV3 takes the top-2 of each group: it needs ≥ 2 experts per group");
            if (v3 && (cfg.NSharedExperts ?? 0) == 0)
                notes.Add("transformers' DeepseekV3 always builds shared_experts (n_shared_experts × moe_intermediate_size wide); with none it reports them missing");
            if (!v3 && cfg.NormTopkProb)
                notes.Add("transformers' DeepseekV2 ignores norm_topk_prob = true (DeepSeek's V2 code and WhaleTech normalize)");
            if (!v3 && cfg.TopkMethod == "noaux_tc")
                notes.Add("softmax scoring with noaux_tc has no transformers class (DeepseekV3 is sigmoid-only, DeepseekV2 has no bias)");
            if (!v3 && cfg.ScoringFunc == "sigmoid")
                notes.Add("sigmoid scoring with greedy/group_limited_greedy has no transformers class (DeepseekV2 is softmax-only)");
        }
        if (!IsV3Routing(cfg) && cfg.RopeScaling is { } rs && rs.MscaleAllDim != 0 && rs.Factor > 1)
            notes.Add("transformers' DeepseekV2 applies no mscale² to the softmax scale and multiplies cos/sin by mscale/mscale_all_dim: logits differ from DeepSeek's (and WhaleTech's) when rope_scaling.mscale_all_dim ≠ 0");
        if (cfg.RopeScaling is { } rs2 && rs2.Factor > 1 && rs2.MscaleAllDim == 0 && rs2.Mscale != 1)
            notes.Add("transformers' DeepseekV2/V3 use 0.1·ln(factor)+1 as the cos/sin factor when mscale_all_dim is 0, ignoring mscale ≠ 1");
        if (cfg.RopeScaling is { } rs3 && rs3.Factor > 1 && Math.Abs((double)cfg.MaxPositionEmbeddings / rs3.OriginalMaxPositionEmbeddings - rs3.Factor) > 1e-9)
            notes.Add($"some transformers versions replace rope_scaling.factor by max_position_embeddings / original_max_position_embeddings = {(double)cfg.MaxPositionEmbeddings / rs3.OriginalMaxPositionEmbeddings:G4} (≠ factor {rs3.Factor:G4}); keep them consistent");
        return notes;
    }

    /// <summary>PyTorch's name of a dtype as config.json's torch_dtype spells it.</summary>
    public static string TorchDTypeName(ScalarType t) => t switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        ScalarType.Float64 => "float64",
        _ => throw new WhaleArgumentException("dtype", t, "must be float32, bfloat16, float16 or float64 for a checkpoint"),
    };
}
