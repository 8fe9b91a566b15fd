// Tour chapter: GRPO (DeepSeekMath §4.1, eqs. 3–4) on 1-digit addition — a short SFT warm start, then
// group-relative policy optimization with an accuracy reward; the mean reward per step is plotted.
using WhaleTech.Grpo;
using WhaleTech.Lab.Grpo;

namespace WhaleTech.Cli.Tour;

public sealed class GrpoChapter : ITourChapter
{
    public string Title => "6. GRPO: reward from a verifier, advantages from the group";

    public TourSection Run(TourContext ctx, Action<double> progress)
    {
        var o = new GrpoOptions
        {
            Task = "addition", Digits = 1, HeldOut = ctx.Quick ? 16 : 100,
            Policy = new() { Hidden = ctx.Quick ? 32 : 64, Layers = ctx.Quick ? 1 : 2, Heads = ctx.Quick ? 2 : 4 },
            SftSteps = ctx.Quick ? 20 : 80, SftBatch = 32, SftLearningRate = 3e-3,
            Steps = ctx.Quick ? 3 : 120, PromptsPerStep = ctx.Quick ? 2 : 8, NumGenerations = ctx.Quick ? 4 : 8,
            LearningRate = 2e-4, WarmupSteps = 0, Rewards = "accuracy:1",
            EvalEvery = ctx.Quick ? 3 : 30, SampleEvery = 1000, CheckpointEvery = 100000, Seed = ctx.Seed,
        };
        var rewards = new List<double>();
        var ev = new GrpoRunEvents { Step = (step, steps, m) => { rewards.Add(m.GetValueOrDefault("reward")); progress(step / (double)steps); } };
        var dir = Path.Combine(ctx.OutDir, "grpo");
        var s = GrpoRun.Train(o, dir, ctx.Device, ev: ev);
        int k = Math.Max(1, rewards.Count / 4);
        double first = rewards.Take(k).Average(), last = rewards.TakeLast(k).Average();
        var plot = "grpo_reward.png";
        PngPlot.Lines(Path.Combine(ctx.OutDir, plot), "GRPO on 1-digit addition: mean accuracy reward per step", "step", "reward",
            [("reward", Enumerable.Range(1, rewards.Count).Select(i => (double)i).ToArray(), rewards.ToArray())]);
        var md = $"A {s.Parameters:N0}-parameter MLA policy, {o.SftSteps} SFT steps, then {s.Steps} GRPO steps of {o.PromptsPerStep} prompts × {o.NumGenerations} samples " +
                 $"(accuracy reward; advantages (r − mean)/std within each group; clipped surrogate).\n\n" +
                 $"Mean reward over the first {k} steps {first:F2}, over the last {k} {last:F2}; held-out exact match {s.SftAccuracy:P0} after SFT → {s.FinalAccuracy:P0} after GRPO. " +
                 "Run files (metrics.jsonl in TRL's names, plots): `grpo/`. The 2-digit results and what is still missing: benchmarks/results/grpo/README.md.";
        return new TourSection(Title, md, "GRPO mean reward, first vs last steps", $"{first:F2} → {last:F2} (held-out {s.SftAccuracy:P0} → {s.FinalAccuracy:P0})", [plot]);
    }
}
