// Extension points: a new attention variant is one class plus one registration line, and then config
// validation, the model, generation with the KV cache and KV accounting all use it without any other edit.
using WhaleTech.Attention;
using WhaleTech.Core;
using WhaleTech.Model;
using WhaleTech.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Tests.Architecture;

/// <summary>A test-only variant: "two-kv", grouped-query attention with exactly two K/V heads, built from the
/// library's StandardAttention (a real new variant would bring its own layer class the same way).</summary>
sealed class TwoKvHeadsVariant : AttentionVariant
{
    public override string Name => "two-kv";
    public override string Summary => "test: grouped-query attention with two key/value heads";
    public override void Validate(ModelConfig cfg)
    {
        if (cfg.NumAttentionHeads % 2 != 0)
            throw new WhaleArgumentException("num_attention_heads", cfg.NumAttentionHeads, "must be even for two-kv");
        StandardAttentionVariant.Mha.Validate(cfg);
    }
    public override int RopeDim(ModelConfig cfg) => cfg.StandardHeadDim;
    public override long KvElementsPerTokenPerLayer(ModelConfig cfg) => 2L * 2 * cfg.StandardHeadDim;
    public override AttentionLayer Create(ModelConfig cfg, RotaryEmbedding rope, LinearFactory linear, string prefix)
        => new StandardAttention(cfg, 2, rope, linear, prefix);
}

public class RegistrationTests
{
    [Fact]
    public void ANewAttentionVariantIsOneClassAndOneRegistration()
    {
        AttentionVariants.Register(new TwoKvHeadsVariant());                       // the one registration line
        Assert.Contains("two-kv", AttentionVariants.Names);

        var cfg = ModelConfig.Tiny("mha", hidden: 32, layers: 2, heads: 4) with { Attention = "two-kv" };
        cfg.Validate();
        Assert.Throws<WhaleArgumentException>(() => (cfg with { NumAttentionHeads = 3, HeadDim = 8 }).Validate());

        torch.manual_seed(3);
        using var model = new DeepSeekLM(cfg);
        model.eval();
        var kProj = model.named_parameters().Single(p => p.name == "model.layers.0.self_attn.k_proj.weight").parameter;
        Assert.Equal(2 * cfg.StandardHeadDim, kProj.shape[0]);                     // two K heads

        // The cached greedy decode equals full recomputation, and the cache holds what the variant declares.
        var prompt = torch.tensor(new long[] { 1, 5, 9, 2, 7 }).unsqueeze(0);
        using var cache = model.CreateCache(1, 16);
        using var _ = torch.no_grad();
        var cached = model.Forward(prompt, cache: cache);
        var full = model.forward(prompt);
        Assert.True(cached.allclose(full, rtol: 1e-5, atol: 1e-5));
        Assert.Equal(cfg.AttentionVariant.KvElementsPerTokenPerLayer(cfg) * 16 * cfg.NumHiddenLayers * sizeof(float), cache.Bytes);
        var next = model.Forward(torch.tensor(new long[] { 3 }).unsqueeze(0), cache: cache);
        var fullNext = model.forward(torch.tensor(new long[] { 1, 5, 9, 2, 7, 3 }).unsqueeze(0)).narrow(1, 5, 1);
        Assert.True(next.allclose(fullNext, rtol: 1e-5, atol: 1e-5));
    }

    [Fact]
    public void AnUnknownAttentionNameListsTheRegisteredOnes()
    {
        var e = Assert.Throws<WhaleArgumentException>(() => (ModelConfig.Tiny() with { Attention = "xla" }).Validate());
        Assert.Equal("whaletech_attention", e.Parameter);
        foreach (var name in new[] { "mla", "mha", "gqa", "mqa" }) Assert.Contains(name, e.Message);
    }
}
