using TorchSharp;
using WhaleTech.Grpo;
using static TorchSharp.torch;

namespace WhaleTech.Tests.Grpo;

/// <summary>reward_std and clip_ratio/* as TRL's GRPOTrainer computes them (GrpoMetrics.cs), on fixed values
/// worked out by hand.</summary>
public class GrpoMetricsTests
{
    static Tensor F(float[] v, params long[] shape) => torch.tensor(v, shape);

    [Fact]
    public void RewardStdIsTheStdOfTheFlatBatchAndTheGroupMeanHasItsOwnKey()
    {
        double[][] groups = [[1, 0, 1, 0], [3, 3, 3, 3]];
        // Flat batch 1,0,1,0,3,3,3,3: mean 1.75, Σ(x−mean)² = 2·0.5625 + 2·3.0625 + 4·1.5625 = 13.5, ÷7.
        Assert.Equal(Math.Sqrt(13.5 / 7), GrpoMetrics.RewardStd(groups), 12);
        // Group stds: sqrt(1/3) (Bessel) and 0 → mean sqrt(1/3)/2; without Bessel 0.5 and 0 → 0.25.
        Assert.Equal(Math.Sqrt(1 / 3.0) / 2, GrpoMetrics.GroupStdMean(groups, bessel: true), 12);
        Assert.Equal(0.25, GrpoMetrics.GroupStdMean(groups, bessel: false), 12);
        // One completion: no std (0, not NaN).
        Assert.Equal(0, GrpoMetrics.Std([2.0], bessel: true));
    }

    [Fact]
    public void ClipRatiosAreMicroBatchMeansAveragedOverCallsWithSequenceMinAndMax()
    {
        var log = new ClipRatioLog();
        // Call 1: 2 sequences × 4 tokens, mask 4 and 2 tokens (6 in all).
        //   low  seq0: 1 of 4 → 0.25; seq1: 0 of 2 → 0     → low_mean 1/6, low_min 0
        //   high seq0: 0;           seq1: 1 of 2 → 0.5     → high_mean 1/6, high_max 0.5
        //   a masked-out clipped token (seq1, t=3) does not count.
        var mask1 = F([1, 1, 1, 1, 1, 1, 0, 0], 2, 4);
        log.Add(F([1, 0, 0, 0, 0, 0, 0, 1], 2, 4).gt(0), F([0, 0, 0, 0, 0, 1, 0, 1], 2, 4).gt(0), mask1);
        // Call 2: one sequence with tokens and one without (ignored by min/max, as TRL's nanmin/nanmax).
        //   low seq0: 2 of 2 → 1 → low_mean 1, low_min 1; high: 0 → high_mean 0, high_max 0.
        var mask2 = F([1, 1, 0, 0, 0, 0, 0, 0], 2, 4);
        log.Add(F([1, 1, 0, 0, 1, 1, 1, 1], 2, 4).gt(0), torch.zeros(2, 4, dtype: ScalarType.Bool), mask2);
        Assert.Equal(2, log.Calls);

        var m = new SortedDictionary<string, double>();
        log.WriteTo(m);
        // Averages over the two calls (not token-weighted: a pooled low mean would be 3/8).
        Assert.Equal((1 / 6.0 + 1) / 2, m["clip_ratio/low_mean"], 6);
        Assert.Equal((1 / 6.0 + 0) / 2, m["clip_ratio/high_mean"], 6);
        Assert.Equal((2 / 6.0 + 1) / 2, m["clip_ratio/region_mean"], 6);
        Assert.Equal((0 + 1) / 2.0, m["clip_ratio/low_min"], 6);
        Assert.Equal((0.5 + 0) / 2, m["clip_ratio/high_max"], 6);
    }

    [Fact]
    public void ACallWithoutAnyTokenIsLeftOutOfMinAndMax()
    {
        var log = new ClipRatioLog();
        log.Add(F([1, 0], 1, 2).gt(0), F([0, 0], 1, 2).gt(0), F([1, 1], 1, 2));           // low 0.5
        log.Add(F([1, 1], 1, 2).gt(0), F([1, 1], 1, 2).gt(0), F([0, 0], 1, 2));           // no tokens: means 0, min/max NaN
        var m = new SortedDictionary<string, double>();
        log.WriteTo(m);
        Assert.Equal(0.25, m["clip_ratio/low_mean"], 6);                                   // (0.5 + 0) / 2: the empty call counts 0 (0 / max(1, 0))
        Assert.Equal(0.5, m["clip_ratio/low_min"], 6);                                     // NaN filtered as TRL's log() does
        Assert.Equal(0, m["clip_ratio/high_max"], 6);

        var none = new SortedDictionary<string, double>();
        var empty = new ClipRatioLog();
        empty.Add(F([1, 1], 1, 2).gt(0), F([0, 0], 1, 2).gt(0), F([0, 0], 1, 2));
        empty.WriteTo(none);
        Assert.False(none.ContainsKey("clip_ratio/low_min"));                              // no valid value: not logged
    }
}
