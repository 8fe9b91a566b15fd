// Small ScottPlot helpers for the tour: line and bar charts saved atomically as PNG.
using ScottPlot;

namespace WhaleTech.Cli.Tour;

public static class PngPlot
{
    public static void Lines(string path, string title, string xLabel, string yLabel, IEnumerable<(string Label, double[] X, double[] Y)> series, double? horizontalLine = null, string? horizontalLabel = null)
    {
        var plot = new Plot();
        foreach (var (label, x, y) in series)
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
        }
        Finish(plot, path, title, xLabel, yLabel);
    }

    public static void Bars(string path, string title, string yLabel, IReadOnlyList<(string Label, double Value)> bars, bool logY = false)
    {
        var plot = new Plot();
        var values = bars.Select(b => logY ? Math.Log10(b.Value) : b.Value).ToArray();
        plot.Add.Bars(values);
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, bars.Count).Select(i => (double)i).ToArray(), bars.Select(b => b.Label).ToArray());
        Finish(plot, path, title, "", logY ? yLabel + " (log10)" : yLabel);
    }

    static void Finish(Plot plot, string path, string title, string xLabel, string yLabel)
    {
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        plot.ShowLegend();
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var tmp = Path.Combine(Path.GetDirectoryName(full)!, "." + Path.GetFileNameWithoutExtension(full) + "." + Guid.NewGuid().ToString("N")[..8] + ".png");
        try { plot.SavePng(tmp, 800, 450); File.Move(tmp, full, overwrite: true); }
        finally { if (File.Exists(tmp)) File.Delete(tmp); }
    }
}
