// Statistics over seeds, shared by every experiment of the Lab (the MLA frontier, its convergence test across run
// lengths, the MHA→MLA conversion study, the MoE balancing comparison).
//
//   mean ± t_{0.975, n−1} · s / √n                  95 % Student-t interval of a mean over n seeds (s: sample sd)
//   d_s = after_s − before_s  for the seeds in both  paired differences: seed s fixes the initialization, the data
//                                                    stream and the eval set, so pairing removes the seed's own offset
//                                                    and the interval is that of the mean difference
//
// MathNet.Numerics provides the t quantile and the sample standard deviation.
using MathNet.Numerics.Distributions;
using MathNet.Numerics.Statistics;

namespace WhaleTech.Lab;

/// <summary>Mean of paired per-seed differences with its 95 % interval, over <paramref name="Pairs"/> seeds.</summary>
public readonly record struct PairedDifference(int Pairs, double Mean, double Ci95);

public static class SeedStatistics
{
    /// <summary>Mean and half-width of the 95 % Student-t confidence interval (half-width 0 for one sample).</summary>
    public static (double Mean, double HalfWidth) MeanCi95(IReadOnlyList<double> values)
    {
        if (values is null || values.Count == 0) throw new Runtime.WhaleArgumentException("values", "empty", "must hold at least one sample");
        double mean = values.Mean();
        if (values.Count < 2) return (mean, 0);
        double t = StudentT.InvCDF(0, 1, values.Count - 1, 0.975);
        return (mean, t * values.StandardDeviation() / Math.Sqrt(values.Count));
    }

    /// <summary>after − before per seed present in both maps (seed → value), averaged with its 95 % interval; null when
    /// no seed is in both. The differences are summed in <paramref name="after"/>'s order.</summary>
    public static PairedDifference? Paired(IReadOnlyDictionary<int, double> before, IReadOnlyDictionary<int, double> after)
    {
        var diffs = after.Where(kv => before.ContainsKey(kv.Key)).Select(kv => kv.Value - before[kv.Key]).ToArray();
        if (diffs.Length == 0) return null;
        var (mean, ci) = MeanCi95(diffs);
        return new PairedDifference(diffs.Length, mean, ci);
    }
}
