using TorchSharp;
using WhaleTech.Moe;
using static TorchSharp.torch;
using static WhaleTech.Tests.Moe.MoeTestUtil;

namespace WhaleTech.Tests.Moe;

public class RouterTests
{
    [Theory]
    [InlineData("sigmoid", "noaux_tc", true, 2.5)]
    [InlineData("sigmoid", "noaux_tc", false, 1.0)]
    [InlineData("softmax", "group_limited_greedy", true, 1.0)]
    [InlineData("softmax", "greedy", false, 16.0)]
    public void CombineWeightsAreNormalizedUnbiasedScoresForAnyBias(string scoring, string method, bool norm, double scale)
    {
        using var layer = Layer(Config(experts: 16, topK: 4, groups: 4, topkGroup: 2, scoring: scoring, method: method, norm: norm, scale: scale));
        var router = layer.gate;
        using var x = torch.randn(64, 16);
        using var logits = x.matmul(router.weight.t());
        using var unbiased = scoring == "sigmoid" ? logits.sigmoid() : logits.softmax(-1);   // [N, E]
        var generator = new Random(3);
        for (int trial = 0; trial < 6; trial++)
        {
            float spread = new[] { 0f, 0.01f, 1f, 10f, 1000f, 1e-6f }[trial];
            using (torch.no_grad())
                router.Bias.copy_(torch.tensor(Enumerable.Range(0, 16).Select(_ => spread * (float)(generator.NextDouble() * 2 - 1)).ToArray()));
            using var r = router.Route(x);
            using var picked = unbiased.gather(1, r.Indices);                                    // [N, K]
            using var expected = (norm ? picked / picked.sum(-1, keepdim: true) : picked) * scale;
            Assert.True(r.Weights.allclose(expected, 1e-5, 1e-7), $"bias spread {spread}");
            Assert.True(r.Scores.allclose(unbiased, 1e-6, 1e-7));
            // the K chosen experts are distinct
            using var sorted = r.Indices.sort(-1).Values;
            Assert.Equal(0, (sorted[.., 1..] == sorted[.., ..^1]).sum().item<long>());
        }
    }

    [Fact]
    public void BiasChangesSelectionButNotTheScoresBehindTheWeights()
    {
        using var layer = Layer(Config(groups: 1, topkGroup: 1));
        using var x = torch.randn(32, 16);
        using var before = layer.gate.Route(x);
        using (torch.no_grad()) layer.gate.Bias[5] = torch.tensor(100f);
        using var after = layer.gate.Route(x);
        Assert.Equal(32, (after.Indices == 5).sum().item<long>());               // everyone now picks expert 5
        Assert.True(after.Scores.allclose(before.Scores));                       // unbiased scores unchanged
        Assert.Null(layer.gate.Bias.grad);
    }

    [Theory]
    [InlineData(0f)]      // unbiased
    [InlineData(-10f)]    // every biased score negative: masking with 0 (not −inf) would pick masked experts
    [InlineData(-3f)]
    public void GroupLimitedRoutingNeverLeavesTheChosenGroups(float shift)
    {
        const int E = 16, G = 4, Gk = 2, K = 4, per = E / G;
        using var layer = Layer(Config(experts: E, topK: K, groups: G, topkGroup: Gk));
        var random = new Random(5);
        // per-expert bias around `shift`, with one large outlier so single experts compete with group sums
        var bias = Enumerable.Range(0, E).Select(i => shift + (float)random.NextDouble() - 0.5f).ToArray();
        bias[3] += 0.9f;
        using (torch.no_grad()) layer.gate.Bias.copy_(torch.tensor(bias));
        using var x = torch.randn(200, 16);
        using var r = layer.gate.Route(x);
        using var biased = r.Scores + layer.gate.Bias;                           // [N, E]
        var b = biased.data<float>().ToArray();
        var idx = r.Indices.data<long>().ToArray();
        if (shift < 0) Assert.True(b.Max() < 0);
        for (int t = 0; t < 200; t++)
        {
            // the chosen groups, by hand: group score = sum of its two largest biased scores
            var groupScore = Enumerable.Range(0, G)
                .Select(g => b.Skip(t * E + g * per).Take(per).OrderByDescending(v => v).Take(2).Sum()).ToArray();
            var chosen = Enumerable.Range(0, G).OrderByDescending(g => groupScore[g]).Take(Gk).ToHashSet();
            for (int j = 0; j < K; j++)
                Assert.Contains((int)idx[t * K + j] / per, chosen);
            // and within the chosen groups the K largest biased scores were taken
            var best = chosen.SelectMany(g => Enumerable.Range(g * per, per)).OrderByDescending(e => b[t * E + e]).Take(K).ToHashSet();
            Assert.True(best.SetEquals(idx.Skip(t * K).Take(K).Select(v => (int)v)));
        }
    }
}
