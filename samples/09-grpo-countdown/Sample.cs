// Sample 09 — GRPO on Countdown (TinyZero-style; DeepSeekMath eqs. 3–4, DeepSeek-R1 §2.2).
// Given numbers and a target, write an arithmetic expression that uses each number at most once and
// evaluates to the target. There is no single right string, so the reward is a RULE: parse the expression,
// check the numbers used and evaluate it (MathTasks.CountdownTask). GRPO only needs that scalar per sample:
// the group-normalized advantage Â_i = (r_i − mean(r)) / std(r) turns "better than my siblings" into a
// push up and "worse" into a push down. The same pipeline as sample 08: SFT warm start, then GRPO.
//
// Shapes: P prompts per step, G generations per prompt, B = P·G sequences, T completion tokens.
using WhaleTech.Grpo;

namespace WhaleTech.Samples;

public static class S09GrpoCountdown
{
    public const string Title = "GRPO on Countdown: a rule-checked reward with many right answers";

    public static void Run(SampleContext ctx)
    {
        // 1. What the task and its reward look like.
        var task = MathTask.Create("countdown", numbers: 3, maxNumber: 20);
        var problem = task.Sample(new Random(9));
        ctx.Out.WriteLine($"Problem: {problem.Question}");
        ctx.Out.WriteLine($"  reference solution {problem.Answer} is correct: {task.IsCorrect(problem, problem.Answer)}");
        ctx.Out.WriteLine($"  \"1+1\" is correct: {(task.IsCorrect(problem, "1+1") ? "yes" : "no")}, partial credit {task.PartialCredit(problem, "1+1"):F2}");

        // 2. SFT + GRPO (partial credit helps: most early samples miss the target).
        var o = new GrpoOptions
        {
            Task = "countdown", Numbers = 3, MaxNumber = ctx.Quick ? 10 : 20, HeldOut = ctx.Quick ? 16 : 100,
            Policy = new() { Hidden = ctx.Quick ? 32 : 64, Layers = ctx.Quick ? 1 : 2, Heads = ctx.Quick ? 2 : 4 },
            SftSteps = ctx.Quick ? 12 : 150, SftBatch = ctx.Quick ? 16 : 32, SftLearningRate = 3e-3,
            Steps = ctx.Quick ? 3 : 15, PromptsPerStep = ctx.Quick ? 2 : 4, NumGenerations = ctx.Quick ? 4 : 8,
            LearningRate = 1e-4, WarmupSteps = 0, Rewards = "accuracy:1,partial:0.2,format:0.1",
            EvalEvery = ctx.Quick ? 3 : 5, SampleEvery = ctx.Quick ? 3 : 5, CheckpointEvery = 1000, Seed = 1,
        };
        S08GrpoAddition.Train(ctx, o);
    }
}
