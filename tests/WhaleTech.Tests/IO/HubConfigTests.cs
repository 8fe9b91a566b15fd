using System.Text.Json;
using WhaleTech.IO;
using WhaleTech.Model;
using static TorchSharp.torch;
using WhaleTech.Core;
using WhaleTech.Hub;

namespace WhaleTech.Tests.IO;

/// <summary>Real Hub config.json files (Fixtures/hub-configs) and the spellings transformers 4/5 write.</summary>
public class HubConfigTests
{
    internal static string FixtureDir(params string[] parts)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine([dir.FullName, "tests", "WhaleTech.Tests", "IO", "Fixtures", .. parts]);
            if (Directory.Exists(Path.Combine(dir.FullName, "tests", "WhaleTech.Tests", "IO", "Fixtures"))) return candidate;
        }
        throw new DirectoryNotFoundException("tests/WhaleTech.Tests/IO/Fixtures not found above " + AppContext.BaseDirectory);
    }

    static string ConfigText(string name) => File.ReadAllText(Path.Combine(FixtureDir("hub-configs"), name + ".config.json"));

    [Fact]
    public void DeepSeekV3ConfigParsesIntoThePreset()
    {
        var cfg = HubConfig.Parse(ConfigText("DeepSeek-V3"));
        var p = ModelPresets.DeepSeekV3;
        Assert.Equal((p.ModelType, p.VocabSize, p.HiddenSize, p.IntermediateSize, p.MoeIntermediateSize, p.NumHiddenLayers, p.NumAttentionHeads),
                     (cfg.ModelType, cfg.VocabSize, cfg.HiddenSize, cfg.IntermediateSize, cfg.MoeIntermediateSize, cfg.NumHiddenLayers, cfg.NumAttentionHeads));
        Assert.Equal((p.NRoutedExperts, p.NSharedExperts, p.NumExpertsPerTok, p.NGroup, p.TopkGroup, p.TopkMethod, p.ScoringFunc, p.NormTopkProb, p.RoutedScalingFactor, p.FirstKDenseReplace),
                     (cfg.NRoutedExperts, cfg.NSharedExperts, cfg.NumExpertsPerTok, cfg.NGroup, cfg.TopkGroup, cfg.TopkMethod, cfg.ScoringFunc, cfg.NormTopkProb, cfg.RoutedScalingFactor, cfg.FirstKDenseReplace));
        Assert.Equal((p.QLoraRank, p.KvLoraRank, p.QkNopeHeadDim, p.QkRopeHeadDim, p.VHeadDim), (cfg.QLoraRank, cfg.KvLoraRank, cfg.QkNopeHeadDim, cfg.QkRopeHeadDim, cfg.VHeadDim));
        Assert.Equal(p.RopeScaling! with { Extra = null }, cfg.RopeScaling! with { Extra = null });
        Assert.Equal(1, cfg.NumNextnPredictLayers);
        Assert.Equal(128, HubConfig.Fp8BlockSize(cfg));
        foreach (var key in new[] { "aux_loss_alpha", "seq_aux", "ep_size", "quantization_config", "moe_layer_freq", "torch_dtype" })
            Assert.True(cfg.Extra!.ContainsKey(key), key);
        Assert.True(HubConfig.RopeInterleaved(cfg));
    }

    [Fact]
    public void DeepSeekV2LiteConfigParses()
    {
        var cfg = HubConfig.Parse(ConfigText("DeepSeek-V2-Lite"));
        Assert.Null(cfg.QLoraRank);
        Assert.Equal(("deepseek_v2", "softmax", "greedy", false, 64, 6, 2), (cfg.ModelType, cfg.ScoringFunc, cfg.TopkMethod, cfg.NormTopkProb, cfg.NRoutedExperts, cfg.NumExpertsPerTok, cfg.NSharedExperts));
        Assert.Equal((0.707, 0.707, 40.0, 4096), (cfg.RopeScaling!.Mscale, cfg.RopeScaling.MscaleAllDim, cfg.RopeScaling.Factor, cfg.RopeScaling.OriginalMaxPositionEmbeddings));
        Assert.Null(HubConfig.Fp8BlockSize(cfg));
        Assert.False(HubConfig.IsV3Routing(cfg));
        Assert.Equal("deepseek_v2", HubConfig.ForTransformers(cfg, ScalarType.BFloat16).ModelType);
        Assert.Contains(HubConfig.TransformersCaveats(cfg), c => c.Contains("mscale²"));   // transformers' DeepseekV2 differs here
    }

    [Theory]
    [InlineData("DeepSeek-V3")]
    [InlineData("DeepSeek-V2-Lite")]
    public void RealConfigsRoundTripEveryField(string name)
    {
        var text = ConfigText(name);
        var written = HubConfig.Parse(text).ToJson();
        using var original = JsonDocument.Parse(text);
        using var again = JsonDocument.Parse(written);
        foreach (var p in original.RootElement.EnumerateObject())
        {
            Assert.True(again.RootElement.TryGetProperty(p.Name, out var v), $"'{p.Name}' was dropped");
            Assert.True(SameJson(p.Value, v), $"'{p.Name}': {p.Value.GetRawText()} became {v.GetRawText()}");
        }
        var added = again.RootElement.EnumerateObject().Select(p => p.Name).Where(n => !original.RootElement.TryGetProperty(n, out _)).ToList();
        Assert.All(added, n => Assert.True(n.StartsWith("whaletech_") || n is "attention_bias" or "num_nextn_predict_layers" or "bos_token_id" or "eos_token_id", n));
        Assert.Equal(written, HubConfig.Parse(written).ToJson());                               // a fixed point
    }

    /// <summary>JSON equality with numbers compared by value (40 = 40.0, 1e-06 = 1E-06); objects ignore the keys only one side has with null.</summary>
    static bool SameJson(JsonElement a, JsonElement b) => (a.ValueKind, b.ValueKind) switch
    {
        (JsonValueKind.Number, JsonValueKind.Number) => a.GetDouble() == b.GetDouble(),
        (JsonValueKind.Object, JsonValueKind.Object) => a.EnumerateObject().All(p => b.TryGetProperty(p.Name, out var q) && SameJson(p.Value, q)),
        (JsonValueKind.Array, JsonValueKind.Array) => a.GetArrayLength() == b.GetArrayLength() && a.EnumerateArray().Zip(b.EnumerateArray()).All(x => SameJson(x.First, x.Second)),
        _ => a.ValueKind == b.ValueKind && a.GetRawText() == b.GetRawText(),
    };

    [Fact]
    public void Transformers5SpellingsAreRead()
    {
        var v5 = """
        {"model_type": "deepseek_v2", "vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
         "q_lora_rank": null, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8,
         "n_routed_experts": 4, "num_experts_per_tok": 2, "n_group": null, "topk_group": null, "topk_method": "greedy", "scoring_func": "softmax",
         "rope_parameters": {"rope_type": "yarn", "type": "yarn", "rope_theta": 50000, "factor": 4, "original_max_position_embeddings": 16,
                             "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}, "dtype": "bfloat16"}
        """;
        var cfg = HubConfig.Parse(v5);
        Assert.Equal(50000, cfg.RopeTheta);
        Assert.Equal(("yarn", 4.0, 16, 0.707), (cfg.RopeScaling!.Type, cfg.RopeScaling.Factor, cfg.RopeScaling.OriginalMaxPositionEmbeddings, cfg.RopeScaling.MscaleAllDim));
        Assert.Equal((1, 1), (cfg.NGroup, cfg.TopkGroup));
        Assert.False(cfg.Extra!.ContainsKey("rope_parameters"));

        var plain = HubConfig.Parse("""{"vocab_size": 64, "rope_parameters": {"rope_type": "default", "rope_theta": 1000}}""");
        Assert.Null(plain.RopeScaling);
        Assert.Equal(1000, plain.RopeTheta);
        var ropeType = HubConfig.Parse("""{"vocab_size": 64, "rope_scaling": {"rope_type": "yarn", "factor": 2, "original_max_position_embeddings": 64}}""");
        Assert.Equal("yarn", ropeType.RopeScaling!.Type);
        Assert.Throws<WhaleTech.Runtime.WhaleFormatException>(() => HubConfig.Parse("""{"vocab_size": 64, "moe_layer_freq": 2}"""));
    }

    [Fact]
    public void ConfigForTransformersNamesTheClassAndDropsStaleFields()
    {
        var v3 = HubConfig.Parse(ConfigText("DeepSeek-V3"));
        var saved = HubConfig.ForTransformers(v3, ScalarType.Float32);
        Assert.Equal(("deepseek_v3", "DeepseekV3ForCausalLM"), (saved.ModelType, saved.Architectures![0]));
        Assert.False(saved.Extra!.ContainsKey("quantization_config"));                       // weights are no longer FP8
        Assert.False(saved.Extra.ContainsKey("auto_map"));                                    // no remote-code files next to them
        Assert.Equal("float32", saved.Extra["torch_dtype"].GetString());
        Assert.True(saved.Extra["rope_interleave"].GetBoolean());
        Assert.Equal(128, HubConfig.Fp8BlockSize(HubConfig.ForTransformers(v3, ScalarType.BFloat16, 128)));
        var json = saved.ToJson();
        Assert.Contains("\"whaletech_attention\"", json);                                     // transformers keeps unknown keys as attributes

        var dense = ModelConfig.Tiny();
        Assert.Equal(dense.NumHiddenLayers, HubConfig.ForTransformers(dense, ScalarType.Float32).FirstKDenseReplace); // no MoE layer in transformers either
        Assert.Contains(HubConfig.TransformersCaveats(ModelConfig.Tiny("gqa")), c => c.Contains("MLA only"));
        Assert.Empty(HubConfig.TransformersCaveats(HubParity.TinyConfigs["v2-lite-v3class"]));
    }
}
