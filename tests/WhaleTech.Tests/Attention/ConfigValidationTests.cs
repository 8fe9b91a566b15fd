using WhaleTech.Attention;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Core;

namespace WhaleTech.Tests.Attention;

/// <summary>Bad attention configs fail with a WhaleArgumentException naming the field.</summary>
public class ConfigValidationTests
{
    static readonly ModelConfig Mla = ModelConfig.Tiny("mla");
    static readonly ModelConfig Mha = ModelConfig.Tiny("mha");

    public static TheoryData<string, Func<ModelConfig>> BadConfigs => new()
    {
        { "qk_rope_head_dim", () => Mla with { QkRopeHeadDim = 7 } },
        { "qk_rope_head_dim", () => Mla with { QkRopeHeadDim = 0 } },
        { "kv_lora_rank", () => Mla with { KvLoraRank = 0 } },
        { "kv_lora_rank", () => Mla with { KvLoraRank = -4 } },
        { "q_lora_rank", () => Mla with { QLoraRank = 0 } },
        { "qk_nope_head_dim", () => Mla with { QkNopeHeadDim = -1 } },
        { "v_head_dim", () => Mla with { VHeadDim = 0 } },
        { "num_attention_heads", () => Mla with { NumAttentionHeads = 0 } },
        { "whaletech_attention", () => Mla with { Attention = "linear" } },
        { "num_attention_heads", () => Mha with { HiddenSize = 66 } },
        { "whaletech_head_dim", () => Mha with { HeadDim = 7 } },
        { "whaletech_head_dim", () => Mha with { HeadDim = -2 } },
        { "num_key_value_heads", () => ModelConfig.Tiny("gqa") with { NumKeyValueHeads = 3 } },
        { "num_key_value_heads", () => ModelConfig.Tiny("gqa") with { NumKeyValueHeads = 0 } },
        { "rope_scaling.factor", () => Mla with { RopeScaling = new RopeScaling { Factor = 0.5 } } },
        { "rope_scaling.beta_fast", () => Mla with { RopeScaling = new RopeScaling { Factor = 4, BetaFast = 1, BetaSlow = 32 } } },
        { "rope_scaling.mscale_all_dim", () => Mla with { RopeScaling = new RopeScaling { Factor = 4, MscaleAllDim = -1 } } },
        { "initializer_range", () => Mla with { InitializerRange = 0 } },
    };

    [Theory]
    [MemberData(nameof(BadConfigs))]
    public void BadConfigNamesTheField(string field, Func<ModelConfig> make)
    {
        var e = Assert.Throws<WhaleArgumentException>(() => make().Validate());
        Assert.Equal(field, e.Parameter);
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public void RopeDimLargerThanTheStandardHeadIsRejected()
    {
        var cfg = Mha with { HeadDim = 8 };
        using var rope = new RotaryEmbedding(16, 64, 10000, null);
        var e = Assert.Throws<WhaleArgumentException>(() => new StandardAttention(cfg, cfg.NumAttentionHeads, rope, Linears.Standard(), "x"));
        Assert.Equal("rope dim", e.Parameter);
    }

    [Fact]
    public void MlaRopeDimMustMatchTheRotaryTable()
    {
        using var rope = new RotaryEmbedding(16, 64, 10000, null);
        var e = Assert.Throws<WhaleArgumentException>(() => new MultiHeadLatentAttention(Mla, rope, Linears.Standard(), "x"));
        Assert.Equal("qk_rope_head_dim", e.Parameter);
    }

    [Fact]
    public void BadConfigJsonIsAFormatErrorNamingTheField()
    {
        var json = ModelPresets.DeepSeekV2Lite.ToJson().Replace("\"qk_rope_head_dim\": 64", "\"qk_rope_head_dim\": 63");
        var e = Assert.Throws<WhaleFormatException>(() => ModelConfig.FromJson(json));
        Assert.Contains("qk_rope_head_dim", e.Message);
    }

    [Fact]
    public void PresetsAreValidAndMatchThePublishedShapes()
    {
        foreach (var name in ModelPresets.Names) ModelPresets.Get(name).Validate();
        Assert.Null(ModelPresets.DeepSeekV2Lite.QLoraRank);
        Assert.Equal((61, 128, 1536, 512), (ModelPresets.DeepSeekV3.NumHiddenLayers, ModelPresets.DeepSeekV3.NumAttentionHeads, ModelPresets.DeepSeekV3.QLoraRank!.Value, ModelPresets.DeepSeekV3.KvLoraRank));
        Assert.Equal((95, 64, 8), (ModelPresets.DeepSeek67B.NumHiddenLayers, ModelPresets.DeepSeek67B.NumAttentionHeads, ModelPresets.DeepSeek67B.NumKeyValueHeads));
        Assert.Throws<WhaleArgumentException>(() => ModelPresets.Get("deepseek-v4"));
    }
}
