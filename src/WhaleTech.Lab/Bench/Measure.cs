// Timing a piece of tensor work the way GPU benchmarks must be timed:
//   1. warm-up runs (first calls allocate, pick kernels, fill caches — they are not what we measure);
//   2. Backend.Synchronize(device) before starting and before reading the clock, because CUDA kernels
//      are queued asynchronously and a clock read without a sync measures only the launch;
//   3. N timed repetitions, each in its own torch.NewDisposeScope() so temporaries die every repetition;
//   4. robust statistics: median (the headline number), p10/p90 (the spread) and min (the best case).
using System.Diagnostics;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Lab.Bench;

/// <summary>Repetition statistics of one measured body, in milliseconds.</summary>
public sealed record Timing(double MedianMs, double P10Ms, double P90Ms, double MinMs, IReadOnlyList<double> SamplesMs)
{
    public int Repetitions => SamplesMs.Count;
    public double MedianSeconds => MedianMs / 1000.0;

    /// <summary>Computes the statistics of raw samples (ms); percentiles interpolate linearly between order statistics.</summary>
    public static Timing FromSamples(IReadOnlyList<double> samplesMs)
    {
        if (samplesMs.Count == 0) throw new WhaleArgumentException("samplesMs", "[]", "needs at least one sample");
        var sorted = samplesMs.OrderBy(x => x).ToArray();
        return new Timing(Percentile(sorted, 0.5), Percentile(sorted, 0.1), Percentile(sorted, 0.9), sorted[0], samplesMs.ToArray());
    }

    /// <summary>The q-quantile (0 ≤ q ≤ 1) of ascending <paramref name="sorted"/>, linear interpolation (numpy's default).</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double q)
    {
        double pos = q * (sorted.Count - 1);
        int lo = (int)Math.Floor(pos), hi = (int)Math.Ceiling(pos);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }

    public override string ToString()
        => $"median {MedianMs:G4} ms (p10 {P10Ms:G4}, p90 {P90Ms:G4}, min {MinMs:G4}; n={Repetitions})";
}

public static class Measure
{
    /// <summary>
    /// Runs <paramref name="body"/> <paramref name="warmup"/> times untimed, then <paramref name="repetitions"/>
    /// times timed. Each run has its own dispose scope; the clock is read only after the device finished.
    /// </summary>
    public static Timing Run(Device device, Action body, int warmup = 3, int repetitions = 10)
    {
        ArgumentNullException.ThrowIfNull(body);
        Guard.NonNegative(nameof(warmup), warmup);
        Guard.Positive(nameof(repetitions), repetitions);

        for (int i = 0; i < warmup; i++)
        {
            using var scope = NewDisposeScope();
            body();
        }
        Backend.Synchronize(device);

        var samples = new double[repetitions];
        for (int i = 0; i < repetitions; i++)
        {
            using var scope = NewDisposeScope();
            Backend.Synchronize(device);
            long start = Stopwatch.GetTimestamp();
            body();
            Backend.Synchronize(device);
            samples[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        return Timing.FromSamples(samples);
    }
}
