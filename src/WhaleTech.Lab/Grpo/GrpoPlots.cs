// PNG plots of a GRPO run (ScottPlot 5): the mean reward per step with a 10-step moving average, and the
// held-out exact match at each evaluation with the 95 % bar labeled, the mean sampled completion length per step. Legends sit right of the data area.
using ScottPlot;

using WhaleTech.Grpo;

namespace WhaleTech.Lab.Grpo;

public static class GrpoPlots
{
    public static void Write(IReadOnlyList<SortedDictionary<string, double>> history, string outDir)
    {
        var steps = history.Where(h => h.ContainsKey("reward")).ToList();
        if (steps.Count > 0)
            SeriesWithMean(steps, "reward", "reward", "reward (10-step mean)", "GRPO reward", "mean reward", Path.Combine(outDir, "reward.png"));
        if (steps.Count > 0 && steps[0].ContainsKey("completions/mean_length"))
            SeriesWithMean(steps, "completions/mean_length", "mean completion length", "10-step mean", "Completion length (sampled)", "tokens",
                           Path.Combine(outDir, "length.png"));
        var evals = history.Where(h => h.ContainsKey("eval/accuracy")).ToList();
        if (evals.Count > 0)
        {
            var plt = new Plot();
            var s = plt.Add.Scatter(evals.Select(h => h["step"]).ToArray(), evals.Select(h => 100 * h["eval/accuracy"]).ToArray());
            s.LegendText = "held-out exact match (%)";
            var target = plt.Add.HorizontalLine(95, 1, Colors.Gray, LinePattern.Dashed);
            target.LegendText = "95 % (the success bar)";
            var label = plt.Add.Text("95 %", evals.Min(h => h["step"]), 95);  // on the plot too: above the line's left end,
            label.LabelAlignment = Alignment.LowerLeft;                       // where accuracy is still low
            label.LabelFontColor = Colors.Gray;
            label.LabelFontSize = 13;
            plt.Axes.SetLimitsY(0, 100);
            plt.Title("Held-out accuracy (greedy)"); plt.XLabel("step"); plt.YLabel("%"); plt.ShowLegend(Edge.Right);
            Save(plt, Path.Combine(outDir, "accuracy.png"));
        }
    }

    /// <summary>One metric per step, raw and as a 10-step moving average.</summary>
    static void SeriesWithMean(IReadOnlyList<SortedDictionary<string, double>> steps, string key, string rawLabel, string meanLabel,
                               string title, string yLabel, string path)
    {
        var plt = new Plot();
        double[] xs = steps.Select(h => h["step"]).ToArray(), ys = steps.Select(h => h[key]).ToArray();
        var raw = plt.Add.Scatter(xs, ys); raw.LegendText = rawLabel; raw.MarkerSize = 0; raw.LineWidth = 1;
        var avg = plt.Add.Scatter(xs, MovingAverage(ys, 10)); avg.LegendText = meanLabel; avg.MarkerSize = 0; avg.LineWidth = 2;
        plt.Title(title); plt.XLabel("step"); plt.YLabel(yLabel); plt.ShowLegend(Edge.Right);
        Save(plt, path);
    }

    static void Save(Plot plt, string path)
    {
        var bytes = plt.GetImageBytes(800, 450, ImageFormat.Png);
        WhaleTech.IO.AtomicFile.WriteAllBytes(path, bytes);
    }

    static double[] MovingAverage(double[] y, int w)
    {
        var r = new double[y.Length];
        for (int i = 0; i < y.Length; i++) { int s = Math.Max(0, i - w + 1); r[i] = y[s..(i + 1)].Average(); }
        return r;
    }
}
