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
}
