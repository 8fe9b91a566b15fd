// Load-balance metrics of DeepSeekMoE layers (Wang et al. 2024 §4.1 define MaxVio):
//
//   MaxVio = (max_i Load_i − mean_i Load_i) / mean_i Load_i     0 for perfect balance, E − 1 when one expert takes all
//   MaxVio_batch   from the counts of one training step (and a 100-step moving average)
//   MaxVio_global  from the counts summed over a whole evaluation set
//   dead experts   experts that received no token in the window
//   load entropy   H = −Σ p_i ln p_i / ln E with p_i = Load_i / Σ Load (1 = uniform, 0 = one expert)
//
// LoadHistory records, per layer, the per-expert counts of every optimizer step for heatmaps and curves.
// Shapes: L MoE layers, E experts, S recorded steps.
using WhaleTech.Runtime;

namespace WhaleTech.Moe;

public static class LoadMetrics
{
    public static double MaxVio(IReadOnlyList<long> load)
    {
        if (load.Count == 0) throw new WhaleArgumentException("load", "[]", "must have one count per expert");
        double mean = load.Average(x => (double)x);
        return mean == 0 ? 0 : (load.Max() - mean) / mean;
    }

    public static int DeadExperts(IReadOnlyList<long> load) => load.Count(c => c == 0);

    /// <summary>Normalized entropy in [0, 1] of the load distribution; 1 when uniform, 0 with no tokens or one expert busy.</summary>
    public static double LoadEntropy(IReadOnlyList<long> load)
    {
        double total = load.Sum(x => (double)x);
        if (total == 0 || load.Count < 2) return 0;
        double h = 0;
        foreach (var c in load)
            if (c > 0) { double p = c / total; h -= p * Math.Log(p); }
        return h / Math.Log(load.Count);
    }

    /// <summary>Element-wise sum of count vectors (e.g. over an evaluation set).</summary>
    public static long[] Sum(IEnumerable<long[]> loads)
    {
        long[]? total = null;
        foreach (var l in loads)
        {
            total ??= new long[l.Length];
            for (int i = 0; i < l.Length; i++) total[i] += l[i];
        }
        return total ?? [];
    }

    /// <summary>Trailing moving average with the given window (the first values average what exists so far).</summary>
    public static double[] MovingAverage(IReadOnlyList<double> values, int window = 100)
    {
        Guard.Positive("window", window);
        var result = new double[values.Count];
        double sum = 0;
        for (int i = 0; i < values.Count; i++)
        {
            sum += values[i];
            if (i >= window) sum -= values[i - window];
            result[i] = sum / Math.Min(i + 1, window);
        }
        return result;
    }
}

/// <summary>Per-layer, per-expert token counts of every optimizer step.</summary>
public sealed class LoadHistory
{
    readonly List<StepLoad> _steps = [];

    public IReadOnlyList<StepLoad> Steps => _steps;

    public void Add(StepLoad load) => _steps.Add(load);

    public int Layers => _steps.Count == 0 ? 0 : _steps[0].Counts.Count;

    /// <summary>MaxVio_batch of every recorded step for <paramref name="layer"/>; layer −1 = mean over layers.</summary>
    public double[] MaxVioBatch(int layer = -1) => _steps
        .Select(s => layer >= 0 ? LoadMetrics.MaxVio(s.Counts[layer]) : s.Counts.Average(c => LoadMetrics.MaxVio(c)))
        .ToArray();

    /// <summary>[E, S] counts of one layer: rows experts, columns steps (the heatmap).</summary>
    public double[,] Heatmap(int layer)
    {
        if (_steps.Count == 0) return new double[0, 0];
        int e = _steps[0].Counts[layer].Length;
        var m = new double[e, _steps.Count];
        for (int s = 0; s < _steps.Count; s++)
            for (int i = 0; i < e; i++) m[i, s] = _steps[s].Counts[layer][i];
        return m;
    }
}
