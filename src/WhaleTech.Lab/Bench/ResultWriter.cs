// Writes a BenchmarkResult as three files in one folder, each atomically (IO/AtomicFile):
//   <suite>.json  the full result, machine included (the source of every number quoted in docs);
//   <suite>.md    a Markdown table, the machine line and the command that reproduces it;
//   <suite>.png   a ScottPlot chart of one metric against one parameter, one series per variant
//                 (lines when the parameter is numeric, grouped bars otherwise).
using System.Globalization;
using System.Text;
using ScottPlot;
using WhaleTech.IO;
using WhaleTech.Runtime;

namespace WhaleTech.Lab.Bench;

/// <summary>Paths of the files one <see cref="ResultWriter.Write"/> produced.</summary>
public sealed record ResultFiles(string Json, string Markdown, string? Png);

public static class ResultWriter
{
    /// <summary>Writes <dir>/<suite>.json, .md and .png (the PNG only when the result has rows to plot).</summary>
    public static ResultFiles Write(BenchmarkResult result, string directory)
    {
        ArgumentNullException.ThrowIfNull(result);
        Directory.CreateDirectory(directory);
        var json = Path.Combine(directory, result.Suite + ".json");
        var md = Path.Combine(directory, result.Suite + ".md");
        var png = Path.Combine(directory, result.Suite + ".png");

        byte[]? image = RenderPng(result);
        AtomicFile.WriteAllText(json, result.ToJson() + "\n");
        AtomicFile.WriteAllText(md, ToMarkdown(result, image is null ? null : Path.GetFileName(png)));
        if (image is not null) AtomicFile.WriteAllBytes(png, image);
        return new ResultFiles(json, md, image is null ? null : png);
    }

    /// <summary>The Markdown report: title, description, machine line, table, plot link, reproducing command.</summary>
    public static string ToMarkdown(BenchmarkResult r, string? pngFileName = null)
    {
        var sb = new StringBuilder();
        sb.Append("# Benchmark `").Append(r.Suite).Append("`\n\n");
        if (r.Description.Length > 0) sb.Append(r.Description).Append("\n\n");
        sb.Append("**Machine:** ").Append(r.Machine?.ToString() ?? "unknown").Append("  \n");
        sb.Append("**Measured:** ").Append(r.Timestamp.ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture));
        if (r.Parameters.Count > 0)
            sb.Append("  \n**Settings:** ").Append(string.Join(", ", r.Parameters.Select(p => $"{p.Key} = {p.Value}")));
        sb.Append("\n\n");
        sb.Append(ToMarkdownTable(r)).Append('\n');
        if (pngFileName is not null)
            sb.Append("![").Append(r.Suite).Append(r.Plot is { } plot ? $": {plot.Metric} vs {plot.XParameter}" : "").Append("](").Append(pngFileName).Append(")\n\n");
        if (r.Command.Length > 0) sb.Append("Reproduce: `").Append(r.Command).Append("`\n");
        return sb.ToString();
    }

    /// <summary>One row per configuration; columns: variant, every parameter, every metric with its unit.</summary>
    public static string ToMarkdownTable(BenchmarkResult r)
    {
        var paramNames = r.Rows.SelectMany(x => x.Parameters.Keys).Distinct().ToList();
        var metrics = r.Rows.SelectMany(x => x.Metrics).GroupBy(m => m.Name).Select(g => (g.Key, g.First().Unit)).ToList();
        var sb = new StringBuilder();
        sb.Append("| ").Append(string.Join(" | ", new[] { "variant" }.Concat(paramNames).Concat(metrics.Select(m => $"{m.Key} ({m.Unit})"))))
          .Append(" |\n");
        sb.Append("|---|").Append(string.Concat(Enumerable.Repeat("---:|", paramNames.Count + metrics.Count))).Append('\n');
        foreach (var row in r.Rows)
        {
            sb.Append("| ").Append(row.Variant).Append(" | ");
            foreach (var p in paramNames) sb.Append(row.Parameters.GetValueOrDefault(p, "")).Append(" | ");
            foreach (var (name, _) in metrics) sb.Append(row.Metric(name) is { } v ? FormatNumber(v) : "").Append(" | ");
            sb.Length--; sb.Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>About four significant digits, never in exponent form for everyday magnitudes.</summary>
    public static string FormatNumber(double v)
    {
        double a = Math.Abs(v);
        string f = a == 0 ? "0" : a >= 1000 ? "F0" : a >= 100 ? "F1" : a >= 10 ? "F2" : a >= 0.001 ? "F4" : "G3";
        return v.ToString(f, CultureInfo.InvariantCulture);
    }

    /// <summary>Renders the result's <see cref="BenchmarkResult.Plot"/> (default: first metric vs first parameter) as PNG bytes; null if nothing to plot.</summary>
    public static byte[]? RenderPng(BenchmarkResult r, int width = 800, int height = 500)
    {
        var first = r.Rows.FirstOrDefault(x => x.Metrics.Count > 0);
        if (first is null) return null;
        var spec = r.Plot ?? new PlotSpec(first.Metrics[0].Name, first.Parameters.Keys.FirstOrDefault() ?? "");
        var rows = r.Rows.Where(x => x.Metric(spec.Metric) is not null).ToList();
        if (rows.Count == 0)
            throw new WhaleArgumentException("plot.metric", spec.Metric, "must name a metric of at least one row: " +
                string.Join(", ", r.Rows.SelectMany(x => x.Metrics).Select(m => m.Name).Distinct()));
        string unit = rows.SelectMany(x => x.Metrics).First(m => m.Name == spec.Metric).Unit;

        var plt = new Plot();
        plt.Title($"{r.Suite}: {spec.Metric} vs {spec.XParameter}" + (r.Machine is { } m ? $"\n{ShortMachine(m)}" : ""));
        plt.YLabel($"{spec.Metric} ({unit})" + (spec.LogY ? ", log scale" : ""));
        plt.XLabel(spec.XParameter);

        bool numericX = rows.All(x => TryNumber(x.Parameters.GetValueOrDefault(spec.XParameter), out _));
        if (numericX) AddLines(plt, rows, spec);
        else AddGroupedBars(plt, rows, spec);
        plt.ShowLegend(Edge.Right);                                          // outside the data area
        return plt.GetImageBytes(width, height, ImageFormat.Png);
    }

    static string ShortMachine(MachineInfo m)
        => m.Gpu is not null ? $"{m.Gpu} · libtorch {m.LibTorch}" : $"{m.Cpu} · {m.TorchThreads} threads · libtorch {m.LibTorch}";

    static double Y(double v, PlotSpec spec) => spec.LogY ? Math.Log10(Math.Max(v, 1e-300)) : v;

    static void AddLines(Plot plt, List<BenchmarkRow> rows, PlotSpec spec)
    {
        var xsAll = new SortedSet<double>();
        foreach (var group in rows.GroupBy(x => x.Variant))
        {
            var pts = group.Select(x => (X: Number(x.Parameters[spec.XParameter]), Y: x.Metric(spec.Metric)!.Value)).OrderBy(p => p.X).ToArray();
            foreach (var p in pts) xsAll.Add(p.X);
            var xs = pts.Select(p => spec.LogX ? Math.Log2(p.X) : p.X).ToArray();
            var ys = pts.Select(p => Y(p.Y, spec)).ToArray();
            var line = plt.Add.Scatter(xs, ys);
            line.LegendText = group.Key;
            line.MarkerSize = 7;
        }
        if (spec.LogX)
            plt.Axes.Bottom.SetTicks(xsAll.Select(Math.Log2).ToArray(), xsAll.Select(x => x == Math.Round(x) ? x.ToString("F0", CultureInfo.InvariantCulture) : FormatNumber(x)).ToArray());
        if (spec.LogY) LogTicks(plt);
    }

    static void AddGroupedBars(Plot plt, List<BenchmarkRow> rows, PlotSpec spec)
    {
        var categories = rows.Select(x => x.Parameters.GetValueOrDefault(spec.XParameter, x.Variant)).Distinct().ToList();
        var variants = rows.Select(x => x.Variant).Distinct().ToList();
        var palette = new ScottPlot.Palettes.Category10();
        for (int j = 0; j < variants.Count; j++)
        {
            var bars = new List<Bar>();
            foreach (var row in rows.Where(x => x.Variant == variants[j]))
            {
                int i = categories.IndexOf(row.Parameters.GetValueOrDefault(spec.XParameter, row.Variant));
                bars.Add(new Bar { Position = i * (variants.Count + 1) + j, Value = Y(row.Metric(spec.Metric)!.Value, spec), FillColor = palette.GetColor(j) });
            }
            var plot = plt.Add.Bars(bars);
            plot.LegendText = variants[j];
        }
        plt.Axes.Bottom.SetTicks(
            categories.Select((_, i) => i * (variants.Count + 1) + (variants.Count - 1) / 2.0).ToArray(), categories.ToArray());
        if (spec.LogY) LogTicks(plt);
        else plt.Axes.Margins(bottom: 0);
    }

    static void LogTicks(Plot plt)
    {
        plt.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
        {
            IntegerTicksOnly = true,
            LabelFormatter = y => FormatNumber(Math.Pow(10, y)),
            MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
        };
    }

    static bool TryNumber(string? s, out double v)
        => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out v);

    static double Number(string s) => double.Parse(s, NumberStyles.Float, CultureInfo.InvariantCulture);
}
