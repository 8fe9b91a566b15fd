using TorchSharp;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Tests.Model;

public class ModelTests
{
    [Fact]
    public void ParameterNamesAreHuggingFaceDeepSeekV3Keys()
    {
        var cfg = CachedDecodeTests.Config("mla", qLora: true);
        var names = new DeepSeekLM(cfg).state_dict().Keys.ToHashSet();
        foreach (var k in new[] {
            "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
            "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
            "model.layers.0.self_attn.q_a_proj.weight", "model.layers.0.self_attn.q_a_layernorm.weight",
            "model.layers.0.self_attn.q_b_proj.weight", "model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
            "model.layers.0.self_attn.kv_a_layernorm.weight", "model.layers.0.self_attn.kv_b_proj.weight",
            "model.layers.1.self_attn.o_proj.weight", "model.layers.1.mlp.gate_proj.weight",
            "model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight" })
            Assert.Contains(k, names);
        Assert.DoesNotContain(names, n => n.Contains("rotary") || n.Contains("cached"));
        var noQ = new DeepSeekLM(CachedDecodeTests.Config("mla", qLora: false)).state_dict().Keys;
        Assert.Contains("model.layers.0.self_attn.q_proj.weight", noQ);
        var kv = new DeepSeekLM(CachedDecodeTests.Config("gqa")).state_dict();
        Assert.Equal(new long[] { 2 * 8, 32 }, kv["model.layers.0.self_attn.k_proj.weight"].shape);
    }

    [Theory]
    [InlineData("num_attention_heads")]
    [InlineData("num_key_value_heads")]
    [InlineData("hidden_size")]
    [InlineData("rope_scaling.type")]
    [InlineData("qk_rope_head_dim")]
    [InlineData("kv_lora_rank")]
    public void InvalidConfigsNameTheField(string field)
    {
        var c = ModelConfig.Tiny("gqa", hidden: 64, heads: 4);
        ModelConfig bad = field switch
        {
            "num_attention_heads" => c with { NumAttentionHeads = 5 },
            "num_key_value_heads" => c with { NumKeyValueHeads = 3 },
            "hidden_size" => c with { HiddenSize = -8 },
            "rope_scaling.type" => c with { RopeScaling = new RopeScaling { Type = "dynamic" } },
            "qk_rope_head_dim" => ModelConfig.Tiny("mla") with { QkRopeHeadDim = 7 },
            "kv_lora_rank" => ModelConfig.Tiny("mla") with { KvLoraRank = 0 },
            _ => throw new ArgumentException(field),
        };
        var e = Assert.Throws<WhaleArgumentException>(() => bad.Validate());
        Assert.Equal(field, e.Parameter);
    }

    [Fact]
    public void ConfigJsonRoundTripsAndKeepsUnknownFields()
    {
        var json = """{"hidden_size": 32, "num_attention_heads": 4, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "vocab_size": 50, "torch_dtype": "bfloat16", "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}}""";
        var cfg = ModelConfig.FromJson(json);
        Assert.Equal(40, cfg.RopeScaling!.Factor);
        var again = ModelConfig.FromJson(cfg.ToJson());
        Assert.Equal(cfg.ToJson(), again.ToJson());
        Assert.Contains("\"torch_dtype\": \"bfloat16\"", again.ToJson());
        Assert.Throws<WhaleFormatException>(() => ModelConfig.FromJson("{\"hidden_size\": -1}"));
        Assert.Throws<WhaleFormatException>(() => ModelConfig.FromJson("{not json"));
    }

    [Fact]
    public void OutOfRangeTokensAndPositionsAreClearErrors()
    {
        var model = new DeepSeekLM(ModelConfig.Tiny("mha", vocab: 20));
        Assert.Equal("token id", Assert.Throws<WhaleArgumentException>(() => model.Forward(torch.tensor(new long[] { 1, 25 }).unsqueeze(0))).Parameter);
        Assert.Equal("position", Assert.Throws<WhaleArgumentException>(() => model.Forward(torch.ones(1, 300, dtype: ScalarType.Int64))).Parameter);
    }
}
