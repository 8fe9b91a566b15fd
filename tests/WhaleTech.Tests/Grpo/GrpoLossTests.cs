using TorchSharp;
using WhaleTech.Grpo;
using static TorchSharp.torch;

namespace WhaleTech.Tests.Grpo;

/// <summary>The GRPO formulas on fixed tensors, against values computed by hand (see GrpoLoss.cs header).</summary>
public class GrpoLossTests
{
    static Tensor D(double[] v, params long[] shape) => torch.tensor(v, shape, dtype: ScalarType.Float64);
    static double[] Vals(Tensor t) => t.to_type(ScalarType.Float64).data<double>().ToArray();

    [Fact]
    public void GroupAdvantagesFollowTheDocumentedStdConvention()
    {
        var r = D([1, 0, 1, 0], 1, 4);
        // Bessel (÷(G−1)): std = sqrt(1/3) = 0.57735, (±0.5)/0.57735 = ±0.866025.
        Assert.All(Vals(GrpoLoss.Advantages(r, AdvantageKind.Group, bessel: true, eps: 0)).Zip(new[] { 1.0, -1, 1, -1 }),
            p => Assert.Equal(p.Second * Math.Sqrt(3) / 2, p.First, 1e-9));
        // Without Bessel (÷G): std = 0.5, advantages ±1.
        Assert.All(Vals(GrpoLoss.Advantages(r, AdvantageKind.Group, bessel: false, eps: 0)).Zip(new[] { 1.0, -1, 1, -1 }),
            p => Assert.Equal(p.Second, p.First, 1e-9));
        // The default eps = 1e-4 moves them by < 2e-4.
        Assert.Equal(0.866025, Vals(GrpoLoss.Advantages(r, AdvantageKind.Group))[0], 3e-4);
        // Dr. GRPO: no std scaling; RLOO: r_i − mean of the others = ±2/3 here.
        Assert.Equal([0.5, -0.5, 0.5, -0.5], Vals(GrpoLoss.Advantages(r, AdvantageKind.None)));
        Assert.All(Vals(GrpoLoss.Advantages(r, AdvantageKind.Rloo)).Zip(new[] { 2 / 3.0, -2 / 3.0, 2 / 3.0, -2 / 3.0 }), p => Assert.Equal(p.Second, p.First, 1e-9));
        // A group with equal rewards has zero advantage (no NaN).
        Assert.All(Vals(GrpoLoss.Advantages(D([1, 1, 1, 1], 1, 4), AdvantageKind.Group)), a => Assert.Equal(0, a));
    }

    [Fact]
    public void BatchStdScalesByTheWholeBatch()
    {
        var r = D([1, 0, 1, 0, 3, 3, 3, 5], 2, 4);
        double mean = 2, ss = new[] { 1.0, 0, 1, 0, 3, 3, 3, 5 }.Sum(x => (x - 1.5) * (x - 1.5) * 0 + (x - 2) * (x - 2));
        double std = Math.Sqrt(ss / 7);
        var a = Vals(GrpoLoss.Advantages(r, AdvantageKind.Batch, bessel: true, eps: 0));
        Assert.Equal(0.5 / std, a[0], 1e-9);                                  // group mean 0.5, batch std
        Assert.Equal((5 - 3.5) / std, a[7], 1e-9);                            // group mean 3.5
        _ = mean;
    }

    [Fact]
    public void K3IsNonNegativeMatchesItsClosedFormAndIsUnbiased()
    {
        var rng = new Random(3);
        var lp = Enumerable.Range(0, 200).Select(_ => -5 * rng.NextDouble()).ToArray();
        var rf = Enumerable.Range(0, 200).Select(_ => -5 * rng.NextDouble()).ToArray();
        var k3 = Vals(GrpoLoss.Kl(D(lp, 200), D(rf, 200), KlEstimator.K3));
        var k1 = Vals(GrpoLoss.Kl(D(lp, 200), D(rf, 200), KlEstimator.K1));
        var k2 = Vals(GrpoLoss.Kl(D(lp, 200), D(rf, 200), KlEstimator.K2));
        for (int i = 0; i < 200; i++)
        {
            double logR = rf[i] - lp[i];
            Assert.True(k3[i] >= 0);
            Assert.Equal(Math.Exp(logR) - logR - 1, k3[i], 1e-12);
            Assert.Equal(-logR, k1[i], 1e-12);
            Assert.Equal(0.5 * logR * logR, k2[i], 1e-12);
        }
        // E_{x~π}[k3] = KL(π‖π_ref) exactly, over a categorical distribution.
        double[] p = [0.5, 0.3, 0.2], q = [0.2, 0.2, 0.6];
        var k3c = Vals(GrpoLoss.Kl(D(p.Select(x => Math.Log(x)).ToArray(), 3), D(q.Select(x => Math.Log(x)).ToArray(), 3), KlEstimator.K3));
        double expected = p.Zip(q).Sum(t => t.First * Math.Log(t.First / t.Second));
        Assert.Equal(expected, p.Zip(k3c).Sum(t => t.First * t.Second), 1e-12);
        // Identical policies: every estimator is 0.
        Assert.All(Vals(GrpoLoss.Kl(D(lp, 200), D(lp, 200), KlEstimator.K3)), v => Assert.Equal(0, v, 1e-15));
    }

    // Two sequences, three tokens: ratios [1.5, 0.9, 1.0] with Â = +1 and [0.5, 1.1, 1.3] with Â = −2;
    // ε = 0.2, ε_high = 0.28; the last token of sequence 0 is padding.
    static (Tensor Logp, Tensor Old, Tensor Adv, Tensor Mask) Fixture() => (
        D([Math.Log(1.5), Math.Log(0.9), 0, Math.Log(0.5), Math.Log(1.1), Math.Log(1.3)], 2, 3),
        torch.zeros(2, 3, dtype: ScalarType.Float64), D([1, -2], 2), D([1, 1, 0, 1, 1, 1], 2, 3));

    [Fact]
    public void ClippedSurrogateEqualsHandComputedValues()
    {
        var (lp, old, adv, _) = Fixture();
        var (loss, low, high) = GrpoLoss.ClippedSurrogate(lp, old, adv, 0.2, 0.28);
        // Â>0: −min(ρ, clip(ρ))·1 → ρ=1.5 clipped to 1.28; 0.9 and 1.0 unclipped.
        // Â<0: −min(−2ρ, −2·clip(ρ)) → ρ=0.5: −min(−1, −1.6) = 1.6; 1.1: 2.2; 1.3: −min(−2.6, −2.56) = 2.6.
        double[] expected = [-1.28, -0.9, -1.0, 1.6, 2.2, 2.6];
        Assert.All(Vals(loss).Zip(expected), p => Assert.Equal(p.Second, p.First, 1e-6));
        Assert.Equal([false, false, false, true, false, false], low.data<bool>().ToArray());
        Assert.Equal([true, false, false, false, false, false], high.data<bool>().ToArray());
    }

    [Theory]
    [InlineData("grpo", 0.5216666666666667)]  // ((−1.28−0.9)/2 + (1.6+2.2+2.6)/3) / 2
    [InlineData("bnpo", 0.844)]               // 4.22 / 5 tokens
    [InlineData("dapo", 0.422)]               // 4.22 / 10 tokens of the whole generation batch
    [InlineData("dr_grpo", 0.5275)]            // 4.22 / (B = 2 · T_max = 4)
    public void AggregationsEqualHandComputedValues(string name, double expected)
    {
        var agg = LossAggregators.Get(name);
        var (lp, old, adv, mask) = Fixture();
        var (perTok, _, _, _) = GrpoLoss.PerTokenLoss(lp, old, null, adv, 0.2, 0.28, beta: 0, KlEstimator.K3);
        var loss = GrpoLoss.Aggregate(perTok, mask, agg, maxCompletionLength: 4, totalTokens: name == "dapo" ? 10 : null);
        Assert.Equal(expected, loss.item<double>(), 1e-6);
    }

    [Fact]
    public void DapoWithoutAGlobalCountEqualsBnpo()
    {
        var (lp, old, adv, mask) = Fixture();
        var (perTok, _, _, _) = GrpoLoss.PerTokenLoss(lp, old, null, adv, 0.2, 0.28, 0, KlEstimator.K3);
        Assert.Equal(GrpoLoss.Aggregate(perTok, mask, LossAggregators.Get("bnpo"), 4).item<double>(), GrpoLoss.Aggregate(perTok, mask, LossAggregators.Get("dapo"), 4).item<double>(), 1e-12);
    }

    [Fact]
    public void LossGradientMatchesFiniteDifferences()
    {
        // Loss as a function of logits [B=2, T=3, V=4] (float64): log-softmax → gather → ratio against fixed
        // π_old → clipped surrogate + β·k3 against fixed π_ref → grpo aggregation.
        var gen = new torch.Generator(7);
        var logits = torch.randn([2, 3, 4], dtype: ScalarType.Float64, generator: gen);
        var targets = torch.tensor(new long[] { 0, 3, 1, 2, 2, 0 }, [2, 3]);
        var oldLogp = (logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1) + 0.1 * torch.randn([2, 3], dtype: ScalarType.Float64, generator: gen)).detach();
        var refLogp = (oldLogp + 0.3 * torch.randn([2, 3], dtype: ScalarType.Float64, generator: gen)).detach();
        var adv = D([0.7, -1.3], 2);
        var mask = D([1, 1, 1, 1, 1, 0], 2, 3);
        foreach (var agg in LossAggregators.Names.Select(n => LossAggregators.Get(n)))
        {
            Func<Tensor, Tensor> f = x =>
            {
                var lp = x.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
                var (pt, _, _, _) = GrpoLoss.PerTokenLoss(lp, oldLogp, refLogp, adv, 0.2, 0.28, beta: 0.1, KlEstimator.K3);
                return GrpoLoss.Aggregate(pt, mask, agg, 5, agg.Name == "dapo" ? 7 : null);
            };
            var x = logits.clone().requires_grad_(true);
            f(x).backward();
            var grad = Vals(x.grad!);
            var flat = Vals(logits);
            const double h = 1e-6;
            for (int i = 0; i < flat.Length; i++)
            {
                var plus = (double[])flat.Clone(); plus[i] += h;
                var minus = (double[])flat.Clone(); minus[i] -= h;
                double fd;
                using (torch.no_grad()) fd = (f(D(plus, 2, 3, 4)).item<double>() - f(D(minus, 2, 3, 4)).item<double>()) / (2 * h);
                Assert.True(Math.Abs(fd - grad[i]) < 1e-6, $"{agg}: d loss / d logits[{i}] autograd {grad[i]} vs finite difference {fd}");
            }
        }
    }
}
