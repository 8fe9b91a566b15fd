// Sample 05 — auxiliary-loss-free load balancing (Wang et al. 2024, Algorithm 1; DeepSeek-V3 §2.1.2).
// After every optimizer step each expert's bias moves by γ·sign(mean load − load_i): overloaded experts
// become less attractive, idle ones more. No gradient flows through it and it never touches the loss.
// This sample trains the same tiny MoE LM without balancing, with an auxiliary loss, and loss-free, and
// prints each run's validation loss and MaxVio_global (max load / mean load − 1 over an eval set).
using WhaleTech.Moe;
using WhaleTech.Lab.Moe;

namespace WhaleTech.Samples;

public static class S05LossFreeBalancing
{
    public const string Title = "Auxiliary-loss-free load balancing vs an auxiliary loss";

    public static void Run(SampleContext ctx)
    {
        var d = new MoeExperimentOptions();
        var o = d with { Seeds = 1, Loop = d.Loop with { Steps = ctx.Quick ? 20 : 150 }, CorpusCharacters = ctx.Quick ? 20_000 : 100_000, EvalBatches = ctx.Quick ? 2 : 8 };
        var runs = new List<MoeRunResult>();
        foreach (var method in new[] { BalanceMethod.None, BalanceMethod.AuxLoss(1e-2), BalanceMethod.LossFree(1e-3) })
        {
            var r = MoeExperiment.Run(method, seed: 1, o, ctx.Device);
            runs.Add(r);
            ctx.Out.WriteLine($"{method.Name,-18} val loss {r.ValLoss:F3}   MaxVio_global {r.MaxVioGlobal:F3}   dead experts {r.DeadExperts}");
        }
        var path = Path.Combine(ctx.OutDir, "maxvio.png");
        LoadPlots.MaxVioCurves(runs.Select(r => (r.Method, r.MaxVioBatch)).ToList(), path, "MaxVio_batch per step", window: 10);
        LoadPlots.Heatmap(runs[^1].History!, 0, Path.Combine(ctx.OutDir, "loss_free_heatmap.png"), "Loss-free: tokens per expert, layer 0");
        ctx.Out.WriteLine($"Plots: {path}. The full experiment with seeds and confidence intervals: whale moe experiment.");
    }
}
