using TorchSharp;
using WhaleTech.Fp8;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;

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

        var o = new Fp8ComparisonOptions { Steps = 16, Hidden = 64, Layers = 1, BatchSize = 4, SequenceLength = 32, EvalBatches = 2, CorpusCharacters = 8000, Seeds = [1], LearningRate = 5e-3 };
        var runs = Fp8TrainingComparison.Run([Fp8Recipe.Bf16, Fp8Recipe.DeepSeekV3], o, torch.CPU);
        Assert.All(runs, r => Assert.True(r.Loss[^1] < r.Loss[0] - 0.3, $"{r.Recipe}: {r.Loss[0]} → {r.Loss[^1]}"));
        var gap = Fp8TrainingComparison.Gaps(runs).Single(g => g.Recipe == "deepseek-v3");
        Assert.True(Math.Abs(gap.MeanRelativeGap) < 0.05, $"gap {gap.MeanRelativeGap}");
        Assert.Equal(0.0, Fp8TrainingComparison.Gaps(runs).Single(g => g.Recipe == "bf16").MeanRelativeGap);
        Assert.Equal(16, Fp8TrainingComparison.GapCurve(runs, "deepseek-v3").Length);
    }
}
