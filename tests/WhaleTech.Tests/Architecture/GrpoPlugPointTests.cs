// GRPO's plug points: a new task, a new reward function and a new loss aggregation are each one class (or
// lambda) plus one registration, and a GRPO run selects them by name like the built-in ones.
using TorchSharp;
using WhaleTech.Grpo;
using static TorchSharp.torch;

namespace WhaleTech.Tests.Architecture;

/// <summary>Test-only task: "a+a=" → 2a (doubling), with partial credit for the right number of digits.</summary>
sealed class DoublingTask : MathTask
{
    public override string Name => "doubling";
    public override MathProblem Sample(Random rng)
    {
        int a = rng.Next(0, 10);
        return new MathProblem(Name, $"{a}+{a}=", (2 * a).ToString(), [a], 2 * a);
    }
    public override bool IsCorrect(MathProblem p, string answer) => AnswerParser.ParseInteger(answer, false) == p.Target;
    public override double PartialCredit(MathProblem p, string answer) => answer.Trim().Length == p.Answer.Length ? 0.5 : 0.0;
}

/// <summary>Test-only aggregation: the plain sum over tokens divided by the sequences (no per-sequence length normalisation).</summary>
sealed class SumPerSequence : LossAggregator
{
    public override string Name => "sum_per_sequence";
    public override string Formula => "Σ ℓ·M / B";
    public override Tensor Reduce(Tensor masked, Tensor mask, int maxCompletionLength, double totalTokens) => masked.sum() / masked.shape[0];
    public override double MicroBatchScale(long rows, long batchRows, int microBatches) => rows / (double)batchRows;
}

public class GrpoPlugPointTests
{
    [Fact]
    public void ANewTaskRewardAndLossAreEachOneRegistration()
    {
        GrpoTasks.Register("doubling", _ => new DoublingTask());                                             // task
        Rewards.Register("short", _ => (p, completion) => completion.Length <= 16 ? 1.0 : 0.0);             // reward
        LossAggregators.Register(new SumPerSequence());                                                      // loss

        var o = new GrpoOptions
        {
            Task = "doubling", Rewards = "accuracy:1,short:0.5", LossType = "sum_per_sequence", HeldOut = 8,
            Policy = new() { Hidden = 32, Layers = 1, Heads = 2 }, SftSteps = 0, PromptsPerStep = 2, NumGenerations = 4,
            MaxCompletionLength = 10, EvalEvery = 1000, SampleEvery = 1000, CheckpointEvery = 1000, WarmupSteps = 0, LearningRate = 1e-3,
        }.Validate();
        var policy = PolicyModel.Create(PolicyModel.Config(o), 1, torch.CPU);
        using var trainer = new GrpoTrainer(o, policy);
        Assert.IsType<DoublingTask>(trainer.Task);
        var m = trainer.TrainStep();
        Assert.True(m.ContainsKey("rewards/short/mean") && m.ContainsKey("rewards/accuracy/mean"));
        Assert.True(double.IsFinite(m["loss"]));
        Assert.All(trainer.LastGroups, g => Assert.Matches(@"^\d\+\d=$", g.Problem.Question));

        // Hand check of the aggregation: ℓ = [[1, 2], [3, 0]] with the last token masked → (1 + 2 + 3) / 2 = 3.
        var loss = GrpoLoss.Aggregate(torch.tensor(new float[] { 1, 2, 3, 9 }, [2, 2]), torch.tensor(new float[] { 1, 1, 1, 0 }, [2, 2]),
                                      LossAggregators.Get("sum_per_sequence"), maxCompletionLength: 2);
        Assert.Equal(3.0, loss.item<float>(), 6);
    }
}
