using TorchSharp;
using WhaleTech.Attention;
using WhaleTech.Model;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Tests.Model;

/// <summary>Cached, batched, left-padded decode must equal recomputing each sequence alone without a cache.</summary>
public class CachedDecodeTests
{
    public static ModelConfig Config(string kind, bool qLora = false, bool yarn = false) => ModelConfig.Tiny(kind, vocab: 40, hidden: 32, layers: 2, heads: 4) with
    {
        NumKeyValueHeads = kind == "gqa" ? 2 : 4,
        QLoraRank = qLora ? 24 : null,
        KvLoraRank = 16, QkNopeHeadDim = 8, QkRopeHeadDim = 4, VHeadDim = 6,
        RopeScaling = yarn ? new RopeScaling { Factor = 4, OriginalMaxPositionEmbeddings = 32, MscaleAllDim = 1, Mscale = 1 } : null,
    };

    /// <summary>Max |cached − recomputed| over every real position of 3 prompts (lengths 3, 7, 5) + 6 decode steps.</summary>
    public static double MaxCachedVsFullDiff(ModelConfig cfg, MlaMode mode = MlaMode.Auto, long autoCrossover = 32, bool sdpa = false)
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(7);
        var model = new DeepSeekLM(cfg);
        model.eval();
        model.SetMlaMode(mode);
        model.SetMlaSdpa(sdpa);
        foreach (var b in model.Layers) if (b.Attention is MultiHeadLatentAttention m) m.AutoCrossover = autoCrossover;
        using var noGrad = torch.no_grad();
        int[] lens = [3, 7, 5]; int steps = 6, B = lens.Length, L = lens.Max();
        var rng = new Random(3);
        var seqs = lens.Select(n => Enumerable.Range(0, n + steps).Select(_ => (long)rng.Next(3, cfg.VocabSize)).ToArray()).ToArray();
        // Reference: each sequence alone, full recomputation, no padding.
        var reference = seqs.Select(s => model.Forward(torch.tensor(s).unsqueeze(0)).squeeze(0)).ToArray(); // [n+steps, V]
        // Batched: left-padded prefill, then one token per step.
        var ids = torch.zeros(B, L, dtype: ScalarType.Int64); var valid = torch.zeros(B, L, dtype: ScalarType.Bool);
        for (int b = 0; b < B; b++) { ids[b, TensorIndex.Slice(L - lens[b])] = torch.tensor(seqs[b][..lens[b]]); valid[b, TensorIndex.Slice(L - lens[b])] = true; }
        var pos = (valid.to_type(ScalarType.Int64).cumsum(1) - 1).clamp_min(0);
        using var cache = model.CreateCache(B, L + steps);
        var logits = model.Forward(ids, pos, cache, valid);                                            // [B, L, V]
        double worst = 0;
        for (int b = 0; b < B; b++)
            worst = Math.Max(worst, (logits[b, TensorIndex.Slice(L - lens[b])] - reference[b].narrow(0, 0, lens[b])).abs().max().item<float>());
        for (int t = 0; t < steps; t++)
        {
            var tok = torch.tensor(seqs.Select((s, b) => s[lens[b] + t]).ToArray()).unsqueeze(1);         // [B, 1]
            var p = torch.tensor(lens.Select(n => (long)(n + t)).ToArray()).unsqueeze(1);
            var step = model.Forward(tok, p, cache, torch.ones(B, 1, dtype: ScalarType.Bool));            // [B, 1, V]
            for (int b = 0; b < B; b++)
                worst = Math.Max(worst, (step[b, 0] - reference[b][lens[b] + t]).abs().max().item<float>());
        }
        return worst;
    }

    [Theory]
    [InlineData("mha")]
    [InlineData("gqa")]
    [InlineData("mqa")]
    public void StandardAttentionCachedDecodeEqualsRecomputation(string kind)
        => Assert.True(MaxCachedVsFullDiff(Config(kind)) <= 1e-5, kind);

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    [InlineData(false, true)]
    public void MlaNaiveAbsorbedAndAutoEqualRecomputation(bool qLora, bool yarn)
    {
        var cfg = Config("mla", qLora, yarn);
        foreach (var (mode, crossover, sdpa) in new[] { (MlaMode.Naive, 32L, false), (MlaMode.Absorbed, 32L, false), (MlaMode.Auto, 4L, false), (MlaMode.Absorbed, 32L, true) })
        {
            var d = MaxCachedVsFullDiff(cfg, mode, crossover, sdpa);
            Assert.True(d <= 1e-5, $"{mode}{(sdpa ? " (SDPA)" : "")} (q_lora {qLora}, yarn {yarn}): max diff {d}");
        }
    }

    /// <summary>Widths of multiples of 16 (Dc = 32, Dr = 16, Dn = 16, Dv = 16, hidden 64), so every product of the
    /// absorbed step — linears, fold, scores, values, unfold — runs Core/SmallGemm (the attention inside
    /// Attention/AbsorbedDecodeKernel) where the CPU has AVX-512 (the
    /// kernels' own tests, Core/SmallGemmTests, run them on any CPU). The switch is not flipped here: other tests
    /// run in parallel.</summary>
    [Fact]
    public void MlaAbsorbedOnSmallGemmShapesEqualsRecomputation()
    {
        var cfg = ModelConfig.Tiny("mla", vocab: 48, hidden: 64, layers: 2, heads: 4) with { KvLoraRank = 32, QkNopeHeadDim = 16, QkRopeHeadDim = 16, VHeadDim = 16 };
        long before = SmallGemm.Calls, beforeAttention = WhaleTech.Attention.AbsorbedDecodeKernel.Calls;
        var d = MaxCachedVsFullDiff(cfg, MlaMode.Absorbed);
        if (SmallGemm.Enabled)
        {
            // q_proj, kv_a_proj_with_mqa and o_proj through SmallGemm.Linear; fold, scores, values and unfold inside the
            // one-pass attention (Attention/AbsorbedDecodeKernel, the same SmallGemm products) — per layer and step.
            Assert.True(SmallGemm.Calls >= before + 2 * 3 * 6, "every decode step's linears ran the kernels");
            Assert.True(WhaleTech.Attention.AbsorbedDecodeKernel.Calls >= beforeAttention + 2 * 6, "every decode step's attention ran the one-pass kernel");
        }
        Assert.True(d <= 1e-5, $"absorbed (SmallGemm {(SmallGemm.Enabled ? "on" : "off")}): max diff {d}");
    }

    [Fact]
    public void GreedyGenerationWithCacheEqualsWithout()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(11);
        var model = new DeepSeekLM(Config("gqa"));
        int[][] prompts = [[1, 5, 6], [1, 7, 8, 9, 10, 11], [1, 12]];
        var opts = new SamplingOptions { MaxNewTokens = 8, StopTokens = [] };
        var a = Generation.Generate(model, prompts, opts);
        var b = Generation.Generate(model, prompts, opts with { UseCache = false });
        Assert.Equal(a.Completions, b.Completions);
        Assert.All(a.Completions, c => Assert.Equal(8, c.Length));
    }

    [Fact]
    public void CacheBytesMatchTheFormulas()
    {
        var mla = new DeepSeekLM(Config("mla"));
        using (var c = mla.CreateCache(3, 10)) Assert.Equal(2L * 3 * 10 * (16 + 4) * 4, c.Bytes);   // layers·B·C·(Dc+Dr)·4 bytes
        mla.SetMlaMode(MlaMode.Naive);
        using (var c = mla.CreateCache(3, 10)) Assert.Equal(2L * 3 * 10 * 4 * ((8 + 4) + 6) * 4, c.Bytes); // H·(Dn+Dr+Dv)
        var gqa = new DeepSeekLM(Config("gqa"));
        using (var c = gqa.CreateCache(3, 10)) Assert.Equal(2L * 3 * 10 * 2 * 2 * 8 * 4, c.Bytes); // 2·Hkv·Dh
    }
}
