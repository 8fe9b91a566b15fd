// Tests of the GRPO exercises: hand-computed values, and agreement with WhaleTech's own implementation
// (src/WhaleTech/Grpo/GrpoLoss.cs) on random tensors.
using TorchSharp;
using WhaleTech.Grpo;
using static TorchSharp.torch;

namespace WhaleTech.Exercises.Grpo;

public class GrpoExerciseTests
{
    static Tensor D(double[] v, params long[] shape) => torch.tensor(v, shape, dtype: ScalarType.Float64);

    [Fact]
    public void Exercise1_GroupAdvantages()
    {
        var a = GrpoExercises.GroupAdvantages(D([1, 0, 1, 0], 1, 4), 0).data<double>().ToArray();
        Assert.All(a.Zip(new[] { 1.0, -1, 1, -1 }), p => Assert.Equal(p.Second * 0.8660254037844386, p.First, 1e-9));
        var r = torch.rand([3, 8], dtype: ScalarType.Float64, generator: new torch.Generator(1));
        Assert.True(GrpoExercises.GroupAdvantages(r, 1e-4).allclose(GrpoLoss.Advantages(r, AdvantageKind.Group, true, 1e-4), 1e-9, 1e-12));
    }

    [Fact]
    public void Exercise2_K3()
    {
        var g = new torch.Generator(2);
        var lp = -5 * torch.rand([64], dtype: ScalarType.Float64, generator: g);
        var rf = -5 * torch.rand([64], dtype: ScalarType.Float64, generator: g);
        var k3 = GrpoExercises.K3(lp, rf);
        Assert.True(k3.ge(0).all().item<bool>());
        Assert.True(k3.allclose(GrpoLoss.Kl(lp, rf, KlEstimator.K3), 1e-9, 1e-12));
        Assert.Equal(Math.Exp(-1) + 1 - 1, GrpoExercises.K3(D([0], 1), D([-1], 1)).item<double>(), 1e-12);
    }

    [Fact]
    public void Exercise3_ClippedLoss()
    {
        var lp = D([Math.Log(1.5), Math.Log(0.9), 0, Math.Log(0.5), Math.Log(1.1), Math.Log(1.3)], 2, 3);
        var old = torch.zeros(2, 3, dtype: ScalarType.Float64);
        var mask = D([1, 1, 0, 1, 1, 1], 2, 3);
        // per token [−1.2, −0.9, ·] and [1.6, 2.2, 2.6] (ε = 0.2 both sides) → ((−2.1)/2 + 6.4/3)/2
        Assert.Equal((-2.1 / 2 + 6.4 / 3) / 2, GrpoExercises.ClippedLoss(lp, old, D([1, -2], 2), mask, 0.2).item<double>(), 1e-9);
    }

    [Theory]
    [InlineData("12+345=", "<answer>357</answer>", 1.0)]
    [InlineData("12+345=", "<answer> 357 </answer>", 1.0)]
    [InlineData("12+345=", "<answer>358</answer>", 0.1)]
    [InlineData("12+345=", "<answer>3x7</answer>", 0.1)]
    [InlineData("12+345=", "357", 0.0)]
    [InlineData("12+345=", "</answer>357<answer>", 0.0)]
    [InlineData("12+345=", "", 0.0)]
    public void Exercise4_AdditionReward(string question, string completion, double expected)
        => Assert.Equal(expected, GrpoExercises.AdditionReward(question, completion));

    [Fact]
    public void Exercise5_StepLoss_HandComputed()
    {
        // P = 1, G = 2: rewards [1, 0] → advantages ±1/√2 (eps 0). Sequence 0: ρ = [1.5, 1] with A > 0 → ℓ = [−1.2A, −A];
        // sequence 1: ρ = [0.5, 1] with A < 0 → ℓ = [0.8|A|, |A|]. Means −1.1|A| and 0.9|A| → −0.1|A|.
        // log π_ref − log π = −1 on every token: k3 = e^−1 − (−1) − 1 = e^−1, so β = 0.1 adds 0.1·e^−1.
        var logp = D([Math.Log(1.5), 0, Math.Log(0.5), 0], 2, 2);
        var loss = GrpoExercises.StepLoss(["12+345="], ["<answer>357</answer>", "357"], logp, torch.zeros(2, 2, dtype: ScalarType.Float64),
                                          logp - 1, torch.ones(2, 2, dtype: ScalarType.Float64), eps: 0.2, beta: 0.1, advantageEps: 0);
        Assert.Equal(-0.1 / Math.Sqrt(2) + 0.1 * Math.Exp(-1), loss.item<double>(), 1e-12);
    }

    [Fact]
    public void Exercise5_StepLoss_MatchesGrpoLoss()
    {
        string[] questions = ["12+345=", "1+1=", "40+2="];
        string[] completions =                                                   // P = 3, G = 4, B = 12
        [
            "<answer>357</answer>", "<answer>358</answer>", "357", "<answer> 357 </answer>",
            "<answer>2</answer>", "<answer>2</answer>", "<answer>3</answer>", "<answer>two</answer>",
            "", "<answer>42</answer>", "</answer>42<answer>", "<answer>41</answer>",
        ];
        double[] rewards = [1, 0.1, 0, 1, 1, 1, 0.1, 0.1, 0, 1, 0, 0.1];            // by the rules of exercise 4
        var g = new torch.Generator(5);
        var old = -3 * torch.rand([12, 6], dtype: ScalarType.Float64, generator: g);
        var logp = old + 0.3 * torch.randn([12, 6], dtype: ScalarType.Float64, generator: g);   // ratios on both sides of the clip
        var refLogp = old + 0.2 * torch.randn([12, 6], dtype: ScalarType.Float64, generator: g);
        var mask = (torch.rand([12, 6], dtype: ScalarType.Float64, generator: g) > 0.3).to_type(ScalarType.Float64);
        mask[.., 0] = torch.tensor(1.0);                                           // every completion has a token
        var ours = GrpoExercises.StepLoss(questions, completions, logp, old, refLogp, mask, eps: 0.2, beta: 0.04, advantageEps: 1e-4);

        var adv = GrpoLoss.Advantages(D(rewards, 3, 4), AdvantageKind.Group, bessel: true, eps: 1e-4).reshape(12);
        var (perToken, _, _, _) = GrpoLoss.PerTokenLoss(logp, old, refLogp, adv, 0.2, 0.2, 0.04, KlEstimator.K3);
        var lib = GrpoLoss.Aggregate(perToken, mask, LossAggregators.Get("grpo"), maxCompletionLength: 6);
        // float64 throughout; the two differ only in summation order (≤ 12·6 terms of size ≤ ~10): 1e-12 is ~10^3 ulps
        Assert.Equal(lib.item<double>(), ours.item<double>(), 1e-12);
    }
}
