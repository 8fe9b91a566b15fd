// The frontier's plots: excess loss vs KV bytes per token (unpaired intervals), the paired gap to the reference
// variant vs KV bytes (the intervals the verdict's "paired by seed" sentence uses), and every run's eval-loss curve.
// One colour per variant, in the same order in every plot of one result (and in the convergence plot,
// FrontierConvergence.Plot), so a variant can be followed from one picture to the next.
namespace WhaleTech.Lab.Mla;

public static class FrontierPlots
{
    /// <summary>The variants in the order their colours are assigned: the convergence table's when there is one.</summary>
    internal static List<string> VariantOrder(MlaFrontierResult result) =>
        (result.Convergence?.Variants.Select(c => c.Variant) ?? result.Options.Variants).Concat(result.Points.Select(p => p.Variant)).Distinct().ToList();

    internal static ScottPlot.Color ColorOf(List<string> order, string variant) => new ScottPlot.Palettes.Category10().GetColor(order.IndexOf(variant));

    /// <summary>Excess loss (mean ± 95 % CI, nats) against KV bytes per token; points sharing a cache size are spread
    /// sideways a little so their bars do not hide each other.</summary>
    public static byte[] Frontier(MlaFrontierResult result, int width = 800, int height = 500)
    {
        var plt = new ScottPlot.Plot();
        var seen = new Dictionary<double, int>();
        // one colour per variant, in the convergence plot's order when there is one, so a variant looks the same in both
        var order = VariantOrder(result);
        double span = Math.Max(1, result.Points.Max(p => p.KvBytesPerTokenBf16) - result.Points.Min(p => p.KvBytesPerTokenBf16));
        foreach (var p in result.Points)
        {
            int k = seen.TryGetValue(p.KvBytesPerTokenBf16, out int n) ? n : 0;
            seen[p.KvBytesPerTokenBf16] = k + 1;
            double x = p.KvBytesPerTokenBf16 + k * span * 0.012;
            var s = plt.Add.Scatter(new[] { x }, new[] { p.MeanExcessLoss });
            s.LegendText = $"{p.Variant}{(result.Convergence?.Variants.FirstOrDefault(c => c.Variant == p.Variant) is { Converged: var c } ? (c ? " (converged)" : " (not converged)") : "")}";
            s.Color = ColorOf(order, p.Variant);
            s.MarkerSize = 9;
            var bar = plt.Add.ErrorBar(new[] { x }, new[] { p.MeanExcessLoss }, new[] { p.ExcessLossCi95 });
            bar.Color = s.Color;
        }
        plt.Title($"{(result.Options.TaskKind == "language" ? "Language" : "MQAR")}, {result.Options.Seeds} seeds × {result.Options.Loop.Steps} steps: excess loss vs KV cache");
        plt.XLabel("KV cache bytes per token (bf16, all layers)");
        plt.YLabel("eval excess loss (nats), mean ± 95% CI");
        plt.ShowLegend(ScottPlot.Edge.Right);
        return plt.GetImageBytes(width, height, ScottPlot.ImageFormat.Png);
    }

    /// <summary>Paired gap to the reference variant (mean ± 95 % CI over seeds of excess(variant) − excess(reference),
    /// same seed, same data and eval set) against KV bytes per token, with the zero line: a bar that clears zero is a
    /// significant difference. Seed-to-seed spread shared by all variants cancels, so these bars are much narrower than
    /// the unpaired ones of <see cref="Frontier"/>. Null when no point is paired (fewer than 2 common seeds).</summary>
    public static byte[]? Paired(MlaFrontierResult result, int width = 800, int height = 500)
    {
        var paired = result.Points.Where(p => p.PairedReference != "").ToList();
        if (paired.Count == 0) return null;
        var plt = new ScottPlot.Plot();
        var order = VariantOrder(result);
        var seen = new Dictionary<double, int>();
        double span = Math.Max(1, result.Points.Max(p => p.KvBytesPerTokenBf16) - result.Points.Min(p => p.KvBytesPerTokenBf16));
        var zero = plt.Add.HorizontalLine(0);
        zero.Color = ScottPlot.Colors.Black;
        zero.LinePattern = ScottPlot.LinePattern.Dashed;
        zero.LegendText = $"{paired[0].PairedReference} (reference)";
        foreach (var p in paired)
        {
            int k = seen.TryGetValue(p.KvBytesPerTokenBf16, out int n) ? n : 0;
            seen[p.KvBytesPerTokenBf16] = k + 1;
            double x = p.KvBytesPerTokenBf16 + k * span * 0.012;
            var s = plt.Add.Scatter(new[] { x }, new[] { p.PairedDifference });
            s.Color = ColorOf(order, p.Variant);
            s.MarkerSize = 9;
            bool significant = Math.Abs(p.PairedDifference) > p.PairedDifferenceCi95;
            s.LegendText = $"{p.Variant}{(significant ? (p.PairedDifference > 0 ? " (worse)" : " (better)") : "")}";
            var bar = plt.Add.ErrorBar(new[] { x }, new[] { p.PairedDifference }, new[] { p.PairedDifferenceCi95 });
            bar.Color = s.Color;
        }
        plt.Title($"Paired by seed: excess loss minus {paired[0].PairedReference}'s, {result.Options.Seeds} seeds × {result.Options.Loop.Steps} steps");
        plt.XLabel("KV cache bytes per token (bf16, all layers)");
        plt.YLabel("paired gap (nats), mean ± 95% CI");
        plt.ShowLegend(ScottPlot.Edge.Right);
        return plt.GetImageBytes(width, height, ScottPlot.ImageFormat.Png);
    }

    /// <summary>Eval loss curves of every run (log10), one colour per variant: the convergence evidence.</summary>
    public static byte[] Curves(IEnumerable<(string Label, IReadOnlyList<CurvePoint> Curve)> curves, string title, int width = 800, int height = 500)
    {
        var plt = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var labels = new Dictionary<string, int>();
        foreach (var (label, curve) in curves)
        {
            bool first = !labels.ContainsKey(label);
            if (first) labels[label] = labels.Count;
            var line = plt.Add.Scatter(curve.Select(p => (double)p.Step).ToArray(), curve.Select(p => Math.Log10(Math.Max(p.EvalLoss, 1e-6))).ToArray());
            line.Color = palette.GetColor(labels[label]);
            line.MarkerSize = 0;
            if (first) line.LegendText = label;
        }
        plt.Title(title);
        plt.XLabel("step");
        plt.YLabel("log10 eval loss (nats)");
        plt.ShowLegend(ScottPlot.Edge.Right);
        return plt.GetImageBytes(width, height, ScottPlot.ImageFormat.Png);
    }
}
