using TorchSharp;
using WhaleTech.Fp8;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;
using WhaleTech.Lab.Fp8;

namespace WhaleTech.Tests.Fp8;

public class Fp8TrainingTests
{
    public Fp8TrainingTests() => Backend.Initialize();

    [Fact]
    public void DeepSeekLmBuiltWithFp8LinearsHasTheSameParametersAndTrainsCloseToBf16()
    {
        var tok = new CharTokenizer();
        var cfg = ModelConfig.Tiny("mla", vocab: tok.VocabSize, hidden: 64, layers: 1, heads: 4);
        torch.manual_seed(1);
        using var plain = new DeepSeekLM(cfg);
        torch.manual_seed(1);
        using var fp8 = new DeepSeekLM(cfg, Fp8Linears.Factory(Fp8Recipe.DeepSeekV3));
        Assert.Equal(plain.named_parameters().Select(p => (p.name, string.Join(",", p.parameter.shape))),
                     fp8.named_parameters().Select(p => (p.name, string.Join(",", p.parameter.shape))));
        Assert.True(Fp8Linears.SetRecipe(fp8, Fp8Recipe.Bf16) > 0);

        var o = new Fp8ComparisonOptions { Loop = new() { Steps = 16, BatchSize = 4, LearningRate = 5e-3 }, Model = new() { Hidden = 64, Layers = 1 }, SequenceLength = 32, EvalBatches = 2, CorpusCharacters = 8000, Seeds = [1] };
        var runs = Fp8TrainingComparison.Run([Fp8Recipe.Bf16, Fp8Recipe.DeepSeekV3], o, torch.CPU);
        Assert.All(runs, r => Assert.True(r.Loss[^1] < r.Loss[0] - 0.3, $"{r.Recipe}: {r.Loss[0]} → {r.Loss[^1]}"));
        var gap = Fp8TrainingComparison.Gaps(runs).Single(g => g.Recipe == "deepseek-v3");
        Assert.True(Math.Abs(gap.MeanRelativeGap) < 0.05, $"gap {gap.MeanRelativeGap}");
        Assert.Equal(0.0, Fp8TrainingComparison.Gaps(runs).Single(g => g.Recipe == "bf16").MeanRelativeGap);
        Assert.Equal(16, Fp8TrainingComparison.GapCurve(runs, "deepseek-v3").Length);
    }
}

/// <summary>Robustness: a non-finite value inside an FP8 model is caught by the trainer's guard, never trained on silently.</summary>
public class Fp8NonFiniteTests
{
    public Fp8NonFiniteTests() => Backend.Initialize();

    [Fact]
    public void AnInfiniteWeightSkipsStepsAndThenStopsWithAClearError()
    {
        torch.manual_seed(2);
        var cfg = ModelConfig.Tiny("mla", vocab: 20, hidden: 32, layers: 1, heads: 2);
        using var model = new DeepSeekLM(cfg, Fp8Linears.Factory(Fp8Recipe.DeepSeekV3));
        var trainer = new WhaleTech.Training.LmTrainer(model, new WhaleTech.Training.TrainOptions { Steps = 10, MaxNonFiniteInRow = 2 }) { Warn = _ => { } };
        using var x = torch.randint(0, 20, [2, 8]);
        using var y = torch.randint(0, 20, [2, 8]);
        var victim = model.named_parameters().First(p => p.name.EndsWith("o_proj.weight")).parameter;
        using (torch.no_grad()) victim[0, 0] = float.PositiveInfinity;     // a blown-up weight: its 128×128 block's scale becomes inf
        var before = model.parameters().Select(p => p.detach().clone()).ToList();
        Assert.True(trainer.TrainStep(x, y).Skipped);
        foreach (var (p, b) in model.parameters().Zip(before))
            Assert.True(p.isnan().logical_not().all().item<bool>() && p.isinf().sum().item<long>() == b.isinf().sum().item<long>(),
                        "a skipped step must not spread NaN/inf into the weights");
        var error = Assert.Throws<WhaleException>(() => trainer.TrainStep(x, y));
        Assert.Contains("non-finite", error.Message);
    }
}
