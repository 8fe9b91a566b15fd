// Statistics over seeds, shared by every experiment of the Lab (the MLA frontier, its convergence test across run
// lengths, the MHA→MLA conversion study, the MoE balancing comparison).
//
//   mean ± t_{0.975, n−1} · s / √n                  95 % Student-t interval of a mean over n seeds (s: sample sd)
//   d_s = after_s − before_s  for the seeds in both  paired differences: seed s fixes the initialization, the data
//                                                    stream and the eval set, so pairing removes the seed's own offset
//                                                    and the interval is that of the mean difference
//   smallest n with  m + t_{0.975, n−1} · s / √n < b  seeds an upper-bound (equivalence) test would need to pass if a
//                                                    measured mean m and sd s held: the power question behind "not
//                                                    converged yet"
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

    /// <summary>The fewest seeds n (≥ 2) for which an interval of a mean <paramref name="mean"/> with sample sd
    /// <paramref name="sd"/> would lie wholly below <paramref name="bound"/> (m + t_{0.975, n−1}·s/√n &lt; b), if the mean
    /// and sd held; null when no number of seeds can (m ≥ b) or more than <paramref name="most"/> would be needed.</summary>
    public static int? SeedsToBound(double mean, double sd, double bound, int most = 10_000)
    {
        if (!(sd >= 0) || double.IsNaN(mean) || double.IsNaN(bound)) throw new Runtime.WhaleArgumentException("sd", sd.ToString("G4"), "must be a non-negative number (with a numeric mean and bound)");
        if (mean >= bound) return null;
        for (int n = 2; n <= most; n++)
            if (mean + StudentT.InvCDF(0, 1, n - 1, 0.975) * sd / Math.Sqrt(n) < bound) return n;
        return null;
    }

    /// <summary>A table cell for a mean over <paramref name="n"/> seeds: "m ± ci", or "m (1 seed)" where one seed gives no
    /// interval (its half-width 0 would read as certainty). The mean is written by <see cref="Number"/> (+ before it when
    /// <paramref name="signed"/>, for gaps; no sign where it rounds to zero); <paramref name="format"/> is the number format of both.</summary>
    public static string MeanCiCell(double mean, double ci, int n, bool signed = false, string format = "F4")
    {
        string m = Number(mean, signed, format);
        return n < 2 ? $"{m} ({n} seed{(n == 1 ? "" : "s")})" : $"{m} ± {ci.ToString(format)}";
    }

    /// <summary><paramref name="value"/> in <paramref name="format"/> with a typographic minus ("−"), a "+" before positive
    /// values when <paramref name="signed"/>, and no sign at all where it rounds to zero (so never "−0.0000").</summary>
    public static string Number(double value, bool signed = false, string format = "F4")
    {
        string digits = Math.Abs(value).ToString(format);
        if (!digits.Any(c => c is >= '1' and <= '9')) return digits;
        return value < 0 ? "−" + digits : signed ? "+" + digits : digits;
    }

    /// <summary>The sample sd behind a 95 % half-width over <paramref name="n"/> samples (the inverse of <see cref="MeanCi95"/>).</summary>
    public static double SdFromCi95(double halfWidth, int n) => n < 2 ? 0 : halfWidth * Math.Sqrt(n) / StudentT.InvCDF(0, 1, n - 1, 0.975);

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
