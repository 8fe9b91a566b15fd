using TorchSharp;
using WhaleTech.Moe;
using static TorchSharp.torch;
using static WhaleTech.Tests.Moe.MoeTestUtil;

namespace WhaleTech.Tests.Moe;

public class BalancingTests
{
    [Fact]
    public void UpdateRules()
    {
        long[] c = [10, 0, 4, 6];                                  // mean 5
        Assert.Equal(new[] { -0.1f, 0.1f, 0.1f, -0.1f }, LoadBalancer.Delta(BiasUpdateRule.Sign, c, 0.1));
        Assert.Equal(new[] { 0f, 0f, 0f, 0f }, LoadBalancer.Delta(BiasUpdateRule.Sign, [3, 3, 3, 3], 0.1));
        var centred = LoadBalancer.Delta(BiasUpdateRule.MeanCentredSign, [9, 0, 3, 4], 0.1);    // mean 4: signs -,+,+,0 → mean 1/4
        Assert.Equal(0, centred.Sum(), 6);
        Assert.Equal(-0.125f, centred[0], 6);
        var prop = LoadBalancer.Delta(BiasUpdateRule.Proportional, c, 0.1);
        Assert.Equal(new[] { -0.1f, 0.1f, 0.02f, -0.02f }, prop.Select(v => MathF.Round(v, 6)).ToArray());
        Assert.Equal(0.001, GammaSchedule.FreezeAfter(0.001, 10).At(9));
        Assert.Equal(0.0, GammaSchedule.FreezeAfter(0.001, 10).At(10));
    }

    [Fact]
    public void BiasUpdatesOncePerOptimizerStepFromAllMicroBatches()
    {
        using var layer = Layer();
        var balancer = new LoadBalancer(layer, BiasUpdateRule.Sign, GammaSchedule.Constant(0.01));
        layer.train();
        var total = new long[8];
        for (int micro = 0; micro < 3; micro++)
        {
            using var x = torch.randn(2, 9, 16) + micro;           // different micro-batches route differently
            using var y = layer.forward(x);
            var c = layer.LastCounts()!;
            for (int i = 0; i < 8; i++) total[i] += c[i];
            Assert.Equal(0f, layer.gate.Bias.abs().sum().item<float>());   // nothing moves inside the step
        }
        Assert.Equal(3 * 2 * 9 * 2, total.Sum());
        var load = balancer.AfterOptimizerStep();
        Assert.Equal(total, load.Counts[0]);
        Assert.Equal(LoadBalancer.Delta(BiasUpdateRule.Sign, total, 0.01), layer.gate.Bias.data<float>().ToArray());
        // a second call without new training forwards changes nothing
        var again = balancer.AfterOptimizerStep();
        Assert.Equal(0, again.Counts[0].Sum());
        Assert.Equal(LoadBalancer.Delta(BiasUpdateRule.Sign, total, 0.01), layer.gate.Bias.data<float>().ToArray());
        Assert.Equal(2, balancer.Step);
    }

    [Fact]
    public void EvalForwardsNeverMoveTheBias()
    {
        using var layer = Layer();
        var balancer = new LoadBalancer(layer, BiasUpdateRule.Sign, GammaSchedule.Constant(0.01));
        layer.eval();
        using (torch.no_grad())
            for (int i = 0; i < 3; i++) { using var y = layer.forward(torch.randn(4, 16) + 3 * i); }
        Assert.NotNull(layer.LastCounts());                           // eval counts exist for metrics...
        var load = balancer.AfterOptimizerStep();
        Assert.Equal(0, load.Counts[0].Sum());                         // ...but are never fed to the balancer
        Assert.Equal(0f, layer.gate.Bias.abs().sum().item<float>());
    }

    [Fact]
    public void FrozenGammaStopsUpdates()
    {
        using var layer = Layer();
        var balancer = new LoadBalancer(layer, BiasUpdateRule.Sign, GammaSchedule.FreezeAfter(0.01, 1));
        layer.train();
        using (var y = layer.forward(torch.randn(16, 16) * 3)) balancer.AfterOptimizerStep();
        var afterFirst = layer.gate.Bias.data<float>().ToArray();
        Assert.NotEqual(0f, afterFirst.Select(Math.Abs).Sum());
        using (var y = layer.forward(torch.randn(16, 16) * 3)) balancer.AfterOptimizerStep();
        Assert.Equal(afterFirst, layer.gate.Bias.data<float>().ToArray());
    }

    [Fact]
    public void BiasIsSavedInTheStateDict()
    {
        using var layer = Layer();
        using (torch.no_grad()) layer.gate.Bias.fill_(0.25f);
        using var copy = Layer(seed: 2);
        copy.load_state_dict(layer.state_dict());
        Assert.Equal(Enumerable.Repeat(0.25f, 8), copy.gate.Bias.data<float>().ToArray());
    }

    [Theory]
    [InlineData(BiasUpdateRule.Sign)]
    [InlineData(BiasUpdateRule.MeanCentredSign)]
    [InlineData(BiasUpdateRule.Proportional)]
    public void LossFreeBalancingMovesASkewedRouterTowardBalance(BiasUpdateRule rule)
    {
        // A learnable router on skewed inputs: the gate's rows are aligned so that tokens prefer experts 0 and 1.
        var (unbalanced, _) = Unbalanced.Value;
        var (balanced, start) = TrainSkewed(rule);
        Assert.True(start > 1.0, $"the synthetic router must start skewed (MaxVio {start})");
        Assert.True(unbalanced > 1.0, $"without balancing it stays skewed (MaxVio {unbalanced})");
        // With 256 assignments over 8 experts, sampling noise alone keeps MaxVio_batch near 0.3–0.5, and sign
        // updates oscillate around balance; the claim is a large, consistent drop, not zero.
        Assert.True(balanced < 0.4 * unbalanced, $"{rule}: MaxVio {balanced} vs {unbalanced} without balancing");
    }

    static readonly Lazy<(double, double)> Unbalanced = new(() => TrainSkewed(BiasUpdateRule.None));

    static (double finalMaxVio, double firstMaxVio) TrainSkewed(BiasUpdateRule rule)
    {
        using var layer = Layer(Config(groups: 1, topkGroup: 1, shared: 0), seed: 11);
        using (torch.no_grad())
        {
            var w = layer.gate.weight;
            w.mul_(0.1);
            w[0].add_(torch.ones(16) * 0.5);   // tokens with a positive mean favour experts 0 and 1
            w[1].add_(torch.ones(16) * 0.5);
        }
        var balancer = new LoadBalancer(layer, rule, GammaSchedule.Constant(0.01));
        using var opt = torch.optim.Adam(layer.parameters(), 1e-3);
        var history = new LoadHistory();
        using var gen = new torch.Generator(3);                          // a private stream: no other code can shift it
        using var target = torch.randn(16, 16, generator: gen) * 0.3;
        layer.train();
        for (int step = 0; step < 100; step++)
        {
            using var scope = torch.NewDisposeScope();
            var x = torch.randn(128, 16, generator: gen) + 0.5;        // skewed token statistics
            var loss = (layer.forward(x) - x.matmul(target)).square().mean();
            opt.zero_grad();
            loss.backward();
            opt.step();
            history.Add(balancer.AfterOptimizerStep());
        }
        var vio = history.MaxVioBatch(0);
        var b = layer.gate.Bias.data<float>().ToArray();
        if (rule != BiasUpdateRule.None) Assert.True(b[0] < b.Skip(2).Min() && b[1] < b.Skip(2).Min(), "the overloaded experts' bias must fall below the others'");
        return (vio.TakeLast(20).Average(), vio.Take(5).Average());
    }
}

/// <summary>Issue 9: a skipped (non-finite) training step moves no bias and its token counts do not leak into the next step.</summary>
public class BalancingNonFiniteTests
{
    [Fact]
    public void SkippedStepsMoveNoBiasAndTheirCountsAreDropped()
    {
        torch.manual_seed(5);
        var cfg = WhaleTech.Core.ModelConfig.Tiny("mla", vocab: 20, hidden: 16, layers: 1, heads: 2) with
        {
            NRoutedExperts = 4, NumExpertsPerTok = 2, NSharedExperts = 1, MoeIntermediateSize = 8,
        };
        using var model = new WhaleTech.Model.DeepSeekLM(cfg);
        var layers = MoeLayers.Find(model);
        var balancer = new LoadBalancer(layers, BiasUpdateRule.Sign, GammaSchedule.Constant(0.01));
        var trainer = new WhaleTech.Training.LmTrainer(model, new WhaleTech.Training.TrainOptions { Steps = 10 }) { Warn = _ => { } };
        var loads = new List<StepLoad>();
        trainer.Stepper.AttachBalancer(balancer, loads.Add);
        bool inject = true;
        trainer.AuxiliaryLosses.Add(() => inject ? torch.tensor(float.NaN) : null);
        using var x = torch.randint(0, 20, [2, 6]);
        using var y = torch.randint(0, 20, [2, 6]);
        Assert.True(trainer.TrainStep(x, y).Skipped);
        Assert.Empty(loads);
        Assert.Equal(0f, layers[0].gate.Bias.abs().sum().item<float>());
        inject = false;
        Assert.False(trainer.TrainStep(x, y).Skipped);
        Assert.Single(loads);
        Assert.Equal(2 * 6 * 2, loads[0].Counts[0].Sum());     // this step's 12 tokens × top-2 only, not the skipped step's too
    }
}
