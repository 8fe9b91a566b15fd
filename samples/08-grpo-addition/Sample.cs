// Sample 08 — GRPO on addition (DeepSeekMath §4.1, eqs. 3–4; DeepSeek-R1 §2.2.1).
// For each prompt q the policy samples a GROUP of G completions o_1…o_G; each gets a rule-based reward
// r_i (accuracy: the answer inside <answer>…</answer> equals the sum; format: the tags are there). The
// advantage of every token of o_i is the group-normalized reward  Â_i = (r_i − mean(r)) / std(r)  — no
// value network. The policy maximizes the clipped surrogate min(ρ·Â, clip(ρ, 1−ε, 1+ε)·Â) − β·KL[π_θ‖π_ref]
// with the k3 KL estimator (eq. 4) against the SFT reference.
// Pipeline here: a short SFT warm start (teacher-forced solutions) so that some samples are right, then a
// few GRPO steps (GrpoRun.Train writes metrics.jsonl, samples.jsonl, summary.json and reward/accuracy plots).
//
// Shapes: P prompts per step, G generations per prompt, B = P·G sequences, T completion tokens.
using WhaleTech.Grpo;
using static TorchSharp.torch;
using WhaleTech.Lab.Grpo;

namespace WhaleTech.Samples;

public static class S08GrpoAddition
{
    public const string Title = "GRPO on addition: SFT warm start, then group-relative policy optimization";

    public static void Run(SampleContext ctx)
    {
        // 1. The advantage of DeepSeekMath eq. 3 on one toy group of 4 rewards.
        using (var scope = NewDisposeScope())
        {
            var rewards = tensor(new[] { 1.0f, 0f, 1.1f, 0.1f }).reshape(1, 4);                  // [P=1, G=4]
            var adv = GrpoLoss.Advantages(rewards, AdvantageKind.Group).data<float>().ToArray();
            ctx.Out.WriteLine($"Group rewards [1, 0, 1.1, 0.1] → advantages [{string.Join(", ", adv.Select(a => a.ToString("F3")))}] (mean 0: {Math.Abs(adv.Sum()) < 1e-5})");
        }

        // 2. SFT + GRPO on 1-digit (quick) or 2-digit addition with a tiny MLA policy.
        var o = new GrpoOptions
        {
            Task = "addition", Digits = ctx.Quick ? 1 : 2, HeldOut = ctx.Quick ? 16 : 100,
            Policy = new() { Hidden = ctx.Quick ? 32 : 64, Layers = ctx.Quick ? 1 : 2, Heads = ctx.Quick ? 2 : 4 },
            SftSteps = ctx.Quick ? 30 : 150, SftBatch = 32, SftLearningRate = 3e-3,
            Steps = ctx.Quick ? 3 : 15, PromptsPerStep = ctx.Quick ? 2 : 4, NumGenerations = ctx.Quick ? 4 : 8,
            LearningRate = 1e-4, WarmupSteps = 0, Rewards = "accuracy:1,format:0.1",
            EvalEvery = ctx.Quick ? 3 : 5, SampleEvery = ctx.Quick ? 3 : 5, CheckpointEvery = 1000, Seed = 1,
        };
        Train(ctx, o);
    }

    /// <summary>Runs SFT + GRPO with <paramref name="o"/> into OutDir/run and prints what happened (shared with sample 09).</summary>
    internal static void Train(SampleContext ctx, GrpoOptions o)
    {
        var dir = Path.Combine(ctx.OutDir, "run");
        var ev = new GrpoRunEvents
        {
            Message = m => ctx.Out.WriteLine("  " + m),
            Samples = (step, groups) =>
            {
                var g = groups[0];
                ctx.Out.WriteLine($"  step {step}: \"{g.Problem.Question}\" → {g.Texts.Length} samples, rewards [{string.Join(", ", g.Rewards.Select(r => r.ToString("F1")))}]");
                ctx.Out.WriteLine($"      e.g. {g.Texts[0].Replace("\n", "⏎")}");
            },
            Step = (step, steps, m) =>
            {
                if (m.TryGetValue("eval/accuracy", out var acc))
                    ctx.Out.WriteLine($"  step {step}/{steps}: mean reward {m.GetValueOrDefault("reward"):F3}, KL {m.GetValueOrDefault("kl"):F4}, held-out exact match {acc:P1}");
            },
        };
        var s = GrpoRun.Train(o, dir, ctx.Device, ev: ev);
        ctx.Out.WriteLine($"Task {s.Task}: {s.Parameters:N0} parameters; held-out exact match after SFT {s.SftAccuracy:P1}, after {s.Steps} GRPO steps {s.FinalAccuracy:P1} (best {s.BestAccuracy:P1})");
        ctx.Out.WriteLine($"SFT {s.SftSeconds:F1} s, GRPO {s.GrpoSeconds:F1} s on {s.Device}. Metrics and plots: {dir} (metrics.jsonl, reward.png, accuracy.png)");
        ctx.Out.WriteLine($"Run finished with finite metrics: {double.IsFinite(s.FinalAccuracy)}");
    }
}
