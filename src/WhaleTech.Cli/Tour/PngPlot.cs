// Small ScottPlot helpers for the tour: line and bar charts saved atomically as PNG. Readability rules: the
// legend sits outside the data area (right of it), a reference line is labeled on the plot, and a log-scale
// bar chart has a real log axis (ticks at powers of ten) and each bar's value written on it.
using ScottPlot;

namespace WhaleTech.Cli.Tour;

public static class PngPlot
{
    public static void Lines(string path, string title, string xLabel, string yLabel, IEnumerable<(string Label, double[] X, double[] Y)> series, double? horizontalLine = null, string? horizontalLabel = null)
    {
        var plot = new Plot();
        var all = series.ToList();
        foreach (var (label, x, y) in all)
        {
            var sc = plot.Add.Scatter(x, y);
            sc.LegendText = label;
            sc.MarkerSize = 0;
        }
        if (horizontalLine is { } h)
        {
            var line = plot.Add.HorizontalLine(h);
            line.LegendText = horizontalLabel ?? "";
            line.LinePattern = LinePattern.Dashed;
            if (horizontalLabel is not null)                                      // also on the plot: above the line's right end,
            {                                                                     // where the (falling) curves have gone below it
                double right = all.SelectMany(s => s.X).DefaultIfEmpty(0).Max();
                var text = plot.Add.Text(horizontalLabel, right, h);
                text.LabelAlignment = Alignment.LowerRight;
                text.LabelFontColor = line.Color;
                text.LabelFontSize = 13;
            }
        }
        Finish(plot, path, title, xLabel, yLabel);
    }

    public static void Bars(string path, string title, string yLabel, IReadOnlyList<(string Label, double Value)> bars, bool logY = false)
    {
        if (logY && bars.Any(b => !(b.Value > 0)))
            throw new Runtime.WhaleArgumentException(nameof(bars), string.Join(", ", bars.Select(b => b.Value)), "must all be positive on a log axis");
        var plot = new Plot();
        var barPlot = plot.Add.Bars(bars.Select(b => logY ? Math.Log10(b.Value) : b.Value).ToArray());
        for (int i = 0; i < bars.Count; i++)
            barPlot.Bars[i].Label = FormatValue(bars[i].Value);              // the value, readable without the axis
        barPlot.ValueLabelStyle.FontSize = 13;
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, bars.Count).Select(i => (double)i).ToArray(), bars.Select(b => b.Label).ToArray());
        if (logY)
        {
            // Bars hold log10(value) and grow from 10^0; the axis shows 1, 10, 100, … with log-spaced minor ticks.
            var ticks = new ScottPlot.TickGenerators.NumericAutomatic
            {
                MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
                IntegerTicksOnly = true,
                LabelFormatter = y => FormatValue(Math.Pow(10, y)),
            };
            plot.Axes.Left.TickGenerator = ticks;
            plot.Axes.SetLimitsY(0, Math.Ceiling(bars.Max(b => Math.Log10(b.Value)) + 0.3));
        }
        else plot.Axes.Margins(bottom: 0, top: 0.15);                         // room for the value labels
        Finish(plot, path, title, "", logY ? yLabel + " (log scale)" : yLabel, legend: false);
    }

    static string FormatValue(double v) => Math.Abs(v) >= 100 ? v.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)
        : v.ToString("G3", System.Globalization.CultureInfo.InvariantCulture);

    static void Finish(Plot plot, string path, string title, string xLabel, string yLabel, bool legend = true)
    {
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        if (legend) plot.ShowLegend(Edge.Right);                              // outside the data: never covers a curve's end
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var tmp = Path.Combine(Path.GetDirectoryName(full)!, "." + Path.GetFileNameWithoutExtension(full) + "." + Guid.NewGuid().ToString("N")[..8] + ".png");
        try { plot.SavePng(tmp, 800, 450); File.Move(tmp, full, overwrite: true); }
        finally { if (File.Exists(tmp)) File.Delete(tmp); }
    }
}
