using System.Text.Json;
using TorchSharp;
using WhaleTech.Fp8;
using WhaleTech.Model;
using WhaleTech.Training;
using WhaleTech.Core;
using WhaleTech.Lab.Fp8;

namespace WhaleTech.Tests.Training;

/// <summary>BF16 AdamW moments (DeepSeek-V3 §3.3) in the training loop: same loss as FP32 moments within a small
/// tolerance, half the optimizer state, and the option travels through JSON and the FP8 comparison.</summary>
public class Bf16MomentsTrainingTests
{
    static readonly CharTokenizer Tok = new();

    static (double EvalLoss, long StateBytes, long Parameters) TinyRun(MomentPrecision moments)
    {
        torch.manual_seed(4);
        using var model = new DeepSeekLM(ModelConfig.Tiny("mla", vocab: Tok.VocabSize, hidden: 32, layers: 1, heads: 2));
        var o = new TrainOptions { Steps = 40, BatchSize = 8, SequenceLength = 32, LearningRate = 5e-3, WarmupSteps = 4, EvalEvery = 40, EvalBatches = 4, OptimizerMoments = moments };
        var trainer = new LmTrainer(model, o);
        var history = trainer.Run(new TokenWindowStream(Tok.Encode(new SyntheticCorpus(8000, 1).Text), 8, 32, 1),
                                  new TokenWindowStream(Tok.Encode(new SyntheticCorpus(3000, 2).Text), 8, 32, 2), torch.CPU);
        return (history[^1].EvalLoss!.Value, trainer.Optimizer.StateBytes, model.parameters().Sum(p => p.numel()));
    }

    [Fact]
    public void TinyLmWithBf16MomentsEndsWithinOnePercentOfFp32Moments()
    {
        var fp32 = TinyRun(MomentPrecision.Fp32);
        var bf16 = TinyRun(MomentPrecision.Bf16);
        double gap = (bf16.EvalLoss - fp32.EvalLoss) / fp32.EvalLoss;
        Console.WriteLine($"eval loss fp32 moments {fp32.EvalLoss:F4}, bf16 moments {bf16.EvalLoss:F4}: relative gap {gap:P3}");
        // Each update differs by ≤ ε_u ≈ 8 % in the worst case (AdamWOptimizer.cs, β = 0.9 / 0.95) and typically far
        // less; after 40 steps the loss has fallen from ≈ 4.0 to ≈ 2.5, and a 1 % band is well inside the change.
        Assert.True(Math.Abs(gap) < 0.01, $"relative gap {gap:P3}");
        Assert.Equal(8 * fp32.Parameters, fp32.StateBytes);
        Assert.Equal(4 * bf16.Parameters, bf16.StateBytes);
    }

    [Fact]
    public void Fp32MomentsTrainBitForBitLikeTheTorchSharpAdamWTheyReplaced()
    {
        // A MoE model (unrouted experts get zero, not null, gradients after the first step) trained 6 steps by
        // LmTrainer, and by the loop LmTrainer ran before AdamWOptimizer existed (torch.optim.AdamW, two groups).
        var cfg = ModelConfig.Tiny("mla", vocab: Tok.VocabSize, hidden: 32, layers: 1, heads: 2) with
        { NRoutedExperts = 4, NSharedExperts = 1, NumExpertsPerTok = 1, MoeIntermediateSize = 16 };
        var o = new TrainOptions { Steps = 6, BatchSize = 4, SequenceLength = 16, WarmupSteps = 2 };
        var tokens = Tok.Encode(new SyntheticCorpus(4000, 3).Text);
        torch.manual_seed(8);
        using var a = new DeepSeekLM(cfg);
        torch.manual_seed(8);
        using var b = new DeepSeekLM(cfg);
        var trainer = new LmTrainer(a, o);
        using var reference = torch.optim.AdamW(
        [
            new TorchSharp.Modules.AdamW.ParamGroup(b.parameters().Where(p => p.dim() >= 2), new TorchSharp.Modules.AdamW.Options { weight_decay = o.WeightDecay, LearningRate = o.LearningRate }),
            new TorchSharp.Modules.AdamW.ParamGroup(b.parameters().Where(p => p.dim() < 2), new TorchSharp.Modules.AdamW.Options { weight_decay = 0.0, LearningRate = o.LearningRate }),
        ], lr: o.LearningRate, beta1: 0.9, beta2: 0.95);
        var schedule = new LrSchedule(o.LearningRate, o.WarmupSteps, o.Steps, o.MinLearningRate);
        var sa = new TokenWindowStream(tokens, 4, 16, 1); var sb = new TokenWindowStream(tokens, 4, 16, 1);
        for (int step = 0; step < o.Steps; step++)
        {
            using var scope = torch.NewDisposeScope();
            var (x, y) = sa.Next(torch.CPU);
            trainer.TrainStep(x, y);
            (x, y) = sb.Next(torch.CPU);
            foreach (var g in reference.ParamGroups) g.LearningRate = schedule.At(step);
            reference.zero_grad();
            Losses.CrossEntropy(b.forward(x), y).backward();
            torch.nn.utils.clip_grad_norm_(b.parameters(), o.GradClip);
            reference.step();
        }
        foreach (var ((name, pa), pb) in a.named_parameters().Zip(b.parameters()))
            Assert.True(pa.equal(pb).all().item<bool>(), $"{name} differs from the TorchSharp AdamW run");
    }

    [Fact]
    public void OptimizerMomentsTravelThroughJson()
    {
        var json = JsonSerializer.Serialize(new TrainOptions { OptimizerMoments = MomentPrecision.Bf16 });
        Assert.Contains("\"optimizer_moments\":\"bf16\"", json);
        Assert.Equal(MomentPrecision.Bf16, JsonSerializer.Deserialize<TrainOptions>(json)!.OptimizerMoments);
        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<TrainOptions>("{\"optimizer_moments\":\"fp16\"}"));
        var grpo = JsonSerializer.Serialize(new WhaleTech.Grpo.GrpoOptions { OptimizerMoments = MomentPrecision.Bf16 }, WhaleTech.Grpo.GrpoCheckpoint.Json);
        Assert.Contains("\"optimizer_moments\": \"bf16\"", grpo);
    }

    [Fact]
    public void Fp8ComparisonRunsEachRecipeWithBothMomentPrecisions()
    {
        var o = new Fp8ComparisonOptions { Loop = new() { Steps = 3, BatchSize = 2 }, Model = new() { Hidden = 32, Layers = 1, Heads = 2 }, SequenceLength = 16, EvalBatches = 1, CorpusCharacters = 3000, Seeds = [1],
            OptimizerMoments = [MomentPrecision.Fp32, MomentPrecision.Bf16] };
        var runs = Fp8TrainingComparison.Run([Fp8Recipe.Bf16, Fp8Recipe.DeepSeekV3], o, torch.CPU);
        Assert.Equal(["bf16", "bf16+bf16-moments", "deepseek-v3", "deepseek-v3+bf16-moments"], runs.Select(r => r.Recipe));
        Assert.All(runs, r => Assert.Equal(r.Moments == "bf16" ? 2 : 1, runs[0].OptimizerStateBytes / r.OptimizerStateBytes));
        var gaps = Fp8TrainingComparison.MomentGaps(runs);
        Assert.Equal(["bf16", "deepseek-v3"], gaps.Select(g => g.Recipe));
        Assert.All(gaps, g => Assert.True(Math.Abs(g.MeanRelativeGap) < 0.05, $"{g.Recipe}: {g.MeanRelativeGap:P3}"));
    }
}
