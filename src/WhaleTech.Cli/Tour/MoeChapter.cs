// Tour chapter: DeepSeek-V3's auxiliary-loss-free balancing at work on a tiny MoE LM.
using WhaleTech.Moe;
using WhaleTech.Lab.Moe;

namespace WhaleTech.Cli.Tour;

public sealed class MoeBalancingChapter : ITourChapter
{
    public string Title => "4. DeepSeekMoE: the balancing bias at work";

    public TourSection Run(TourContext ctx, Action<double> progress)
    {
        var d = new MoeExperimentOptions();
        var o = d with { Seeds = 1, Loop = d.Loop with { Steps = ctx.Quick ? 15 : 300 }, CorpusCharacters = ctx.Quick ? 20_000 : 60_000, EvalBatches = ctx.Quick ? 2 : 6 };
        var methods = new[] { BalanceMethod.None, BalanceMethod.LossFree(1e-3) };
        var runs = new List<MoeRunResult>();
        foreach (var m in methods)
        {
            runs.Add(MoeExperiment.Run(m, ctx.Seed, o, ctx.Device));
            progress(runs.Count / (double)methods.Length);
        }
        var plot = "moe_maxvio.png";
        LoadPlots.MaxVioCurves(runs.Select(r => (r.Method, r.MaxVioBatch)).ToList(), Path.Combine(ctx.OutDir, plot), "MaxVio_batch per step (8 experts, top-2)", window: 10);
        var md = $"A 2-layer MoE LM (8 routed experts, top-2, 1 shared), {o.Loop.Steps} steps, without balancing and with the loss-free bias update (γ = 1e-3, sign rule):\n\n" +
                 "| method | val loss | MaxVio_global | dead experts |\n|---|---:|---:|---:|\n" +
                 string.Join("\n", runs.Select(r => $"| {r.Method} | {r.ValLoss:F3} | {r.MaxVioGlobal:F3} | {r.DeadExperts} |")) +
                 "\n\nThe bias only changes which experts are chosen; the loss never sees it. Full experiment with auxiliary-loss baselines and seeds: `whale moe experiment`.";
        return new TourSection(Title, md, "MoE MaxVio_global, none vs loss-free", $"{runs[0].MaxVioGlobal:F2} vs {runs[1].MaxVioGlobal:F2}", [plot]);
    }
}
