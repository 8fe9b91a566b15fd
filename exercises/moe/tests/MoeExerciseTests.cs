// Tests of the DeepSeekMoE exercises: hand-computed values, and agreement with WhaleTech's own implementation
// (src/WhaleTech/Moe/Router.cs, LoadBalancer.cs, LoadMetrics.cs).
using TorchSharp;
using WhaleTech.Core;
using WhaleTech.Moe;
using static TorchSharp.torch;

namespace WhaleTech.Exercises.Moe;

public class MoeExerciseTests
{
    static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    // One token, E = 8. Expert 6 has the second-best score overall, but its partner 7 is weak, so its group loses.
    static readonly float[] HandLogits = [2f, -1f, 0f, 0.5f, -2f, 1.5f, 2.5f, -3f];
    static readonly float[] HandBias = [0, 0, 0, 0, 3, 0, 0, 0];         // expert 4 made attractive by the bias only

    [Fact]
    public void Exercise1_GroupScores()
    {
        using var biased = torch.tensor(HandLogits, [1, 8]).sigmoid() + torch.tensor(HandBias);
        var s = HandLogits.Select(v => Sigmoid(v)).ToArray();
        // G = 4 groups of 2: the top-2 sum is the pair's sum
        var g4 = MoeExercises.GroupScores(biased, 4).data<float>().ToArray();
        double[] expected4 = [s[0] + s[1], s[2] + s[3], s[4] + 3 + s[5], s[6] + s[7]];
        // G = 2 groups of 4: top-2 of {σ2, σ-1, σ0, σ.5} and of {σ-2 + 3, σ1.5, σ2.5, σ-3}
        var g2 = MoeExercises.GroupScores(biased, 2).data<float>().ToArray();
        double[] expected2 = [s[0] + s[3], s[4] + 3 + s[6]];
        // fp32: a sigmoid (≤ 1 ulp) and ≤ 2 adds of values < 8, ulp ≤ 2^-21 ≈ 4.8e-7: error ≤ 1.5 ulps ≈ 7.2e-7 < 1e-6
        Assert.All(g4.Zip(expected4), p => Assert.Equal(p.Second, p.First, 1e-6));
        Assert.All(g2.Zip(expected2), p => Assert.Equal(p.Second, p.First, 1e-6));
        // groups of one expert: the group score is that expert's score
        Assert.True(MoeExercises.GroupScores(biased, 8).allclose(biased));
    }

    [Fact]
    public void Exercise2_Route_HandComputed()
    {
        // biased = σ(logits) + b ≈ [.881, .269, .5, .622, 3.119, .818, .924, .047]
        // groups (G = 4): {0,1} 1.150, {2,3} 1.122, {4,5} 3.937, {6,7} 0.971 → keep {4,5} and {0,1}
        // top-2 inside: experts 4 (3.119) and 0 (.881); without groups it would be 4 and 6.
        // weights from the UNBIASED scores: σ(−2), σ(2), which sum to 1 → ×2.5
        var (idx, w) = MoeExercises.Route(torch.tensor(HandLogits, [1, 8]), torch.tensor(HandBias), groups: 4, topkGroup: 2, topK: 2, routedScalingFactor: 2.5);
        var (sortedIdx, weights) = SortByExpert(idx, w);
        Assert.Equal(new long[] { 0, 4 }, sortedIdx);
        // fp32: 2 sigmoids, 1 add, 1 divide, 1 multiply of values < 4 (ulp ≤ 2^-22): ≤ 5 half-ulps ≈ 6e-7 < 1e-6
        Assert.Equal(2.5 * Sigmoid(2), weights[0], 1e-6);
        Assert.Equal(2.5 * Sigmoid(-2), weights[1], 1e-6);
    }

    [Theory]
    [InlineData(16, 4, 2, 4, 0.0, 0.0)]       // unbiased
    [InlineData(16, 4, 2, 4, 0.5, 0.0)]       // random biases in ±0.5
    [InlineData(16, 4, 2, 4, 0.1, -10.0)]     // every biased score negative: masking with 0 instead of −inf goes wrong
    [InlineData(8, 1, 1, 2, 1.0, 0.0)]        // no groups
    [InlineData(32, 8, 4, 8, 0.05, 0.0)]      // DeepSeek-V3's ratios (256 experts, 8 groups, topk_group 4, K = 8) scaled down
    public void Exercise2_Route_MatchesRouter(int experts, int groups, int topkGroup, int topK, double spread, double shift)
    {
        var router = MakeRouter(experts, groups, topkGroup, topK, scale: 2.5, seed: experts + groups);
        var random = new Random(experts * 7 + groups);
        using (torch.no_grad())
            router.Bias.copy_(torch.tensor(Enumerable.Range(0, experts).Select(_ => (float)(shift + spread * (2 * random.NextDouble() - 1))).ToArray()));
        using var x = torch.randn(48, 16, generator: new torch.Generator((ulong)experts));
        using var lib = router.Route(x);
        var (idx, w) = MoeExercises.Route(lib.Logits, router.Bias, groups, topkGroup, topK, 2.5);
        Assert.Equal(new long[] { 48, topK }, idx.shape);
        var (libIdx, libW) = SortByExpert(lib.Indices, lib.Weights);
        var (ourIdx, ourW) = SortByExpert(idx, w);
        Assert.Equal(libIdx, ourIdx);
        // Both compute s_i / Σ_K s_j · 2.5 in fp32, the sum perhaps in another order: each has relative error
        // ≤ (K + 2)·u (K − 1 adds, one divide, one multiply; u = 2^-24), so they differ by ≤ 2(K + 2)·u relative.
        double u = Math.Pow(2, -24);
        for (int i = 0; i < ourW.Length; i++)
            Assert.True(Math.Abs(ourW[i] - libW[i]) <= 2 * (topK + 2) * u * Math.Abs(libW[i]), $"weight {i}: {ourW[i]} vs {libW[i]}");
    }

    [Fact]
    public void Exercise3_BiasUpdate()
    {
        Assert.Equal(new[] { -0.001, 0.001, 0, 0 }, MoeExercises.BiasUpdate([10, 2, 6, 6], 0.001));
        Assert.Equal(new[] { 0.0, 0, 0 }, MoeExercises.BiasUpdate([0, 0, 0], 0.001));        // no tokens: nothing moves
        var random = new Random(3);
        for (int trial = 0; trial < 20; trial++)
        {
            var load = Enumerable.Range(0, 16).Select(_ => (long)random.Next(0, 100)).ToArray();
            var ours = MoeExercises.BiasUpdate(load, 0.001);
            var lib = LoadBalancer.Delta(BiasUpdateRule.Sign, load, 0.001);        // float32
            // the library rounds γ·sign to float32: relative error ≤ u = 2^-24
            for (int i = 0; i < 16; i++) Assert.True(Math.Abs(ours[i] - lib[i]) <= 0.001 * Math.Pow(2, -24));
        }
    }

    [Fact]
    public void Exercise4_MaxVio()
    {
        Assert.Equal(2.0 / 3, MoeExercises.MaxVio([10, 2, 6, 6]), 1e-15);
        Assert.Equal(3.0, MoeExercises.MaxVio([8, 0, 0, 0]), 1e-15);        // one expert takes all: E − 1
        Assert.Equal(0.0, MoeExercises.MaxVio([5, 5, 5, 5]));
        Assert.Equal(0.0, MoeExercises.MaxVio([0, 0, 0]));
        var random = new Random(4);
        for (int trial = 0; trial < 20; trial++)
        {
            var load = Enumerable.Range(0, 16).Select(_ => (long)random.Next(0, 1000)).ToArray();
            Assert.Equal(LoadMetrics.MaxVio(load), MoeExercises.MaxVio(load), 1e-12);
        }
    }

    [Fact]
    public void Exercise5_SimulateBalancing_MatchesTheLibraryLoop()
    {
        const int E = 8, G = 4, Gk = 2, K = 2, N = 64, Steps = 60;
        const double Gamma = 0.01;
        // a skewed router: expert i gets +0.4·i on its logit, so high experts are overloaded at first
        using var logits = torch.randn(N, E, generator: new torch.Generator(9)) + 0.4 * torch.arange(E, dtype: ScalarType.Float32);
        var ours = MoeExercises.SimulateBalancing(logits, G, Gk, K, Gamma, Steps);

        var router = MakeRouter(E, G, Gk, K, scale: 1.0, seed: 1);      // the library: Router.Select, LoadBalancer.Delta, LoadMetrics.MaxVio
        var lib = new double[Steps];
        using var scores = logits.sigmoid();
        for (int step = 0; step < Steps; step++)
        {
            using var idx = router.Select(scores, router.Bias);
            var load = idx.flatten().bincount(null, E).data<long>().ToArray();
            lib[step] = LoadMetrics.MaxVio(load);
            using (torch.no_grad()) router.Bias.add_(torch.tensor(LoadBalancer.Delta(BiasUpdateRule.Sign, load, Gamma)));
        }
        Assert.Equal(lib, ours);                                        // same selections every step
        Assert.True(ours[0] > 1, $"the skew overloads someone at first: MaxVio {ours[0]}");
        Assert.True(ours.TakeLast(10).Average() < ours[0] / 2, $"balancing works: {ours[0]} → {ours.TakeLast(10).Average()}");
    }

    static Router MakeRouter(int experts, int groups, int topkGroup, int topK, double scale, int seed)
    {
        torch.manual_seed(seed);
        return new Router(ModelConfig.Tiny(hidden: 16) with
        {
            NRoutedExperts = experts, NumExpertsPerTok = topK, NGroup = groups, TopkGroup = topkGroup, ScoringFunc = "sigmoid",
            TopkMethod = "noaux_tc", NormTopkProb = true, RoutedScalingFactor = scale, NSharedExperts = 1, MoeIntermediateSize = 12,
            InitializerRange = 0.2,
        });
    }

    /// <summary>Indices [N, K] and weights [N, K] → both flattened, each row ordered by expert index.</summary>
    static (long[] Indices, double[] Weights) SortByExpert(Tensor indices, Tensor weights)
    {
        var (sorted, order) = indices.sort(-1);
        return (sorted.data<long>().ToArray(), weights.gather(1, order).to_type(ScalarType.Float64).data<double>().ToArray());
    }
}
