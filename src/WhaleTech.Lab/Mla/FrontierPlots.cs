// The frontier's plots: excess loss vs KV bytes per token (unpaired intervals), the paired gap to the reference
// variant vs KV bytes (by the exact KL where every point has it, else the sampled excess loss: the intervals of the
// verdict's "paired by seed" sentences), and every run's eval-loss curve.
// One colour per variant, in the same order in every plot of one result (and in the convergence plot,
// FrontierConvergence.Plot), so a variant can be followed from one picture to the next.
namespace WhaleTech.Lab.Mla;

public static class FrontierPlots
{
    /// <summary>The variants in the order their colours are assigned: the convergence table's when there is one.</summary>
    internal static List<string> VariantOrder(MlaFrontierResult result) =>
        (result.Convergence?.Variants.Select(c => c.Variant) ?? result.Options.Variants).Concat(result.Points.Select(p => p.Variant)).Distinct().ToList();

    static readonly ScottPlot.Palettes.Category10 Palette = new();

    /// <summary>The colour of the <paramref name="index"/>-th variant, in every frontier plot and the convergence plot.</summary>
    internal static ScottPlot.Color VariantColor(int index) => Palette.GetColor(index);

    internal static ScottPlot.Color ColorOf(List<string> order, string variant) => VariantColor(order.IndexOf(variant));

    /// <summary>Excess loss (mean ± 95 % CI, nats) against KV bytes per token.</summary>
    public static byte[] Frontier(MlaFrontierResult result, int width = 800, int height = 500)
    {
        var plt = new ScottPlot.Plot();
        PointsWithBars(plt, result, result.Points, p => (p.MeanExcessLoss, p.ExcessLossCi95),
            p => result.Convergence?.Variants.FirstOrDefault(c => c.Variant == p.Variant) is { Converged: var c } ? (c ? " (converged)" : " (not converged)") : "");
        plt.Title($"{(result.Options.TaskKind == "language" ? "Language" : "MQAR")}, {result.Options.Seeds} seeds × {result.Options.Loop.Steps} steps: excess loss vs KV cache");
        plt.YLabel("eval excess loss (nats), mean ± 95% CI");
        return Finish(plt, width, height);
    }

    /// <summary>Paired gap to the reference variant (mean ± 95 % CI over seeds of variant − reference, same seed, same
    /// data and eval set) against KV bytes per token, with the zero line: a bar that clears zero is a significant
    /// difference. Seed-to-seed spread shared by all variants cancels, so these bars are much narrower than the unpaired
    /// ones of <see cref="Frontier"/>. The gap is the exact KL's where every paired point has it (the lower-noise
    /// estimate the verdict reads first), else the sampled excess loss's (<see cref="PairedGap"/>). Null when no point
    /// is paired (fewer than 2 common seeds).</summary>
    public static byte[]? Paired(MlaFrontierResult result, int width = 800, int height = 500)
    {
        var paired = result.Points.Where(p => p.PairedReference != "").ToList();
        if (paired.Count == 0) return null;
        var (estimator, gap) = PairedGap(paired);
        var plt = new ScottPlot.Plot();
        var zero = plt.Add.HorizontalLine(0);
        zero.Color = ScottPlot.Colors.Black;
        zero.LinePattern = ScottPlot.LinePattern.Dashed;
        zero.LegendText = $"{paired[0].PairedReference} (reference)";
        PointsWithBars(plt, result, paired, gap,
            p => gap(p) is var (d, ci) && Math.Abs(d) > ci ? (d > 0 ? " (worse)" : " (better)") : "");
        int fewest = paired.Min(p => p.Seeds), most = paired.Max(p => p.Seeds);
        plt.Title($"Paired gap to {paired[0].PairedReference}, {estimator}: {(fewest == most ? $"{most}" : $"{fewest}–{most}")} seeds × {result.Options.Loop.Steps} steps");
        plt.YLabel("paired gap (nats), mean ± 95% CI");
        return Finish(plt, width, height);
    }

    /// <summary>Which gap the paired plot draws: the exact KL's when every point has a paired KL gap, else the sampled
    /// excess loss's; its name for the title, and the (mean, 95 % half-width) of one point.</summary>
    internal static (string Estimator, Func<FrontierPoint, (double Value, double Ci95)> Gap) PairedGap(IReadOnlyList<FrontierPoint> paired)
    {
        if (paired.Count > 0 && paired.All(p => p.PairedKlDifference is not null))
        {
            int sets = paired.Min(p => p.PairedKlSharedSets);
            return (sets > 0 ? $"exact KL on {sets} shared sets" : "exact KL", p => (p.PairedKlDifference!.Value, p.PairedKlCi95 ?? 0));
        }
        return ("excess loss", p => (p.PairedDifference, p.PairedDifferenceCi95));
    }

    /// <summary>One marker with its ± bar per point, at its KV bytes per token, in its variant's colour; points sharing a
    /// cache size are spread sideways a little (by 1.2 % of the result's KV range each) so their bars do not hide each other.</summary>
    static void PointsWithBars(ScottPlot.Plot plt, MlaFrontierResult result, IEnumerable<FrontierPoint> points,
        Func<FrontierPoint, (double Value, double Ci95)> y, Func<FrontierPoint, string> legendSuffix)
    {
        var order = VariantOrder(result);
        double span = Math.Max(1, result.Points.Max(p => p.KvBytesPerTokenBf16) - result.Points.Min(p => p.KvBytesPerTokenBf16));
        var seen = new Dictionary<double, int>();
        foreach (var p in points)
        {
            int k = seen.TryGetValue(p.KvBytesPerTokenBf16, out int n) ? n : 0;
            seen[p.KvBytesPerTokenBf16] = k + 1;
            double x = p.KvBytesPerTokenBf16 + k * span * 0.012;
            var (value, ci) = y(p);
            var s = plt.Add.Scatter(new[] { x }, new[] { value });
            s.Color = ColorOf(order, p.Variant);
            s.MarkerSize = 9;
            s.LegendText = p.Variant + legendSuffix(p);
            var bar = plt.Add.ErrorBar(new[] { x }, new[] { value }, new[] { ci });
            bar.Color = s.Color;
        }
        plt.XLabel("KV cache bytes per token (bf16, all layers)");
    }

    static byte[] Finish(ScottPlot.Plot plt, int width, int height)
    {
        plt.ShowLegend(ScottPlot.Edge.Right);
        return plt.GetImageBytes(width, height, ScottPlot.ImageFormat.Png);
    }

    /// <summary>Eval loss curves of every run (log10), one colour per label: the convergence evidence. Colours follow
    /// <paramref name="order"/> when given (a frontier's <see cref="VariantOrder"/>), else the labels' first appearance.</summary>
    public static byte[] Curves(IEnumerable<(string Label, IReadOnlyList<CurvePoint> Curve)> curves, string title, IReadOnlyList<string>? order = null, int width = 800, int height = 500)
    {
        var plt = new ScottPlot.Plot();
        var labels = order?.Select((label, i) => (label, i)).ToDictionary(x => x.label, x => x.i) ?? new Dictionary<string, int>();
        var named = new HashSet<string>();
        foreach (var (label, curve) in curves)
        {
            if (!labels.ContainsKey(label)) labels[label] = labels.Count;
            var line = plt.Add.Scatter(curve.Select(p => (double)p.Step).ToArray(), curve.Select(p => Math.Log10(Math.Max(p.EvalLoss, 1e-6))).ToArray());
            line.Color = VariantColor(labels[label]);
            line.MarkerSize = 0;
            if (named.Add(label)) line.LegendText = label;
        }
        plt.Title(title);
        plt.XLabel("step");
        plt.YLabel("log10 eval loss (nats)");
        return Finish(plt, width, height);
    }
}
