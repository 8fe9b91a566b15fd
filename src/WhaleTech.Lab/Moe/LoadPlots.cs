// PNG figures of expert load with ScottPlot 5: a heatmap (expert × step) per layer, MaxVio_batch curves with
// their 100-step moving average, and the balance/quality "dilemma" plot of the experiment (MaxVio_global
// against validation loss, Wang et al. 2024 Fig. 1). Files are rendered in memory and written atomically.
using ScottPlot;
using WhaleTech.IO;

using WhaleTech.Moe;

namespace WhaleTech.Lab.Moe;

public static class LoadPlots
{
    /// <summary>Heatmap of tokens per expert (rows) over optimizer steps (columns) for one layer.</summary>
    public static void Heatmap(LoadHistory history, int layer, string path, string title)
    {
        var plot = new Plot();
        var data = history.Heatmap(layer);                       // [E, S]
        if (data.Length > 0)
        {
            var heatmap = plot.Add.Heatmap(FlipRows(data));      // ScottPlot draws row 0 at the top
            heatmap.Colormap = new ScottPlot.Colormaps.Viridis();
            plot.Add.ColorBar(heatmap).Label = "tokens";
        }
        plot.Title(title);
        plot.XLabel("optimizer step");
        plot.YLabel("expert");
        Save(plot, path, 900, 450);
    }

    /// <summary>MaxVio_batch (mean over layers) per step and its moving average, one pair of lines per run.</summary>
    public static void MaxVioCurves(IReadOnlyList<(string Label, double[] MaxVio)> runs, string path, string title, int window = 100)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        for (int r = 0; r < runs.Count; r++)
        {
            var (label, vio) = runs[r];
            var xs = Enumerable.Range(0, vio.Length).Select(i => (double)i).ToArray();
            var raw = plot.Add.Scatter(xs, vio);
            raw.Color = palette.GetColor(r).WithAlpha(0.25);
            raw.MarkerSize = 0;
            var smooth = plot.Add.Scatter(xs, LoadMetrics.MovingAverage(vio, window));
            smooth.Color = palette.GetColor(r);
            smooth.MarkerSize = 0;
            smooth.LineWidth = 2;
            smooth.LegendText = label;
        }
        plot.Title(title);
        plot.XLabel("optimizer step");
        plot.YLabel($"MaxVio_batch ({window}-step average bold)");
        plot.ShowLegend(Edge.Right);                                          // outside the data: covers no curve's end
        Save(plot, path, 900, 500);
    }

    /// <summary>One point per method: mean validation loss (x) against mean MaxVio_global (y), with CI error bars.
    /// Both quantities are ≥ 0, so each bar is clipped at 0; all bars are drawn before all markers (open shapes, one
    /// per method), so neither a bar nor a nearby method hides a point; the legend sits right of the data area.</summary>
    public static void Dilemma(IReadOnlyList<(string Label, double Loss, double LossCi, double MaxVio, double MaxVioCi)> points, string path, string title)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        for (int i = 0; i < points.Count; i++)
        {
            var p = points[i];
            var (lossLow, vioLow) = (ClipAtZero(p.Loss, p.LossCi), ClipAtZero(p.MaxVio, p.MaxVioCi));
            var bars = new ScottPlot.Plottables.ErrorBar([p.Loss], [p.MaxVio], [lossLow], [p.LossCi], [vioLow], [p.MaxVioCi]) { Color = palette.GetColor(i).WithAlpha(0.7) };
            plot.Add.Plottable(bars);
        }
        for (int i = 0; i < points.Count; i++)
        {
            var p = points[i];
            var marker = plot.Add.Marker(p.Loss, p.MaxVio, OpenShapes[i % OpenShapes.Length], 14, palette.GetColor(i));
            marker.MarkerStyle.LineWidth = 2.5f;                             // open shapes: two methods at the same spot both show
            marker.LegendText = p.Label;
        }
        plot.Title(title);
        plot.XLabel("validation loss (lower is better)");
        plot.YLabel("MaxVio_global (lower is balanced)");
        plot.Axes.AutoScale();
        var auto = plot.Axes.GetLimits();
        if (auto.Bottom < 0)                                                  // MaxVio ≥ 0: a sliver below 0 keeps a point at 0 whole
            plot.Axes.SetLimitsY(-0.04 * auto.Top, auto.Top);
        plot.ShowLegend(Edge.Right);
        Save(plot, path, 900, 550);
    }

    static readonly MarkerShape[] OpenShapes = [MarkerShape.OpenCircle, MarkerShape.OpenSquare, MarkerShape.OpenTriangleUp, MarkerShape.OpenDiamond, MarkerShape.OpenTriangleDown, MarkerShape.Cross];

    /// <summary>The lower error-bar length that stops at 0 (the quantity cannot be negative).</summary>
    public static double ClipAtZero(double value, double error) => Math.Max(0, Math.Min(error, value));

    static double[,] FlipRows(double[,] m)
    {
        int rows = m.GetLength(0), cols = m.GetLength(1);
        var f = new double[rows, cols];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) f[rows - 1 - r, c] = m[r, c];
        return f;
    }

    static void Save(Plot plot, string path, int width, int height)
    {
        var bytes = plot.GetImageBytes(width, height, ImageFormat.Png);
        AtomicFile.WriteAllBytes(path, bytes);
    }
}
