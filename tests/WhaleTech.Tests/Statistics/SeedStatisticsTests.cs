// Lab/SeedStatistics: the Student-t interval every experiment reports, and the per-seed pairing the MLA frontier
// (variant vs reference) and its convergence test (length vs length) share.
using WhaleTech.Lab;
using WhaleTech.Runtime;
using Xunit;

namespace WhaleTech.Tests.Statistics;

public class SeedStatisticsTests
{
    [Fact]
    public void ConfidenceIntervalIsStudentT()
    {
        var (mean, half) = SeedStatistics.MeanCi95([1.0, 2.0, 3.0]);
        Assert.Equal(2.0, mean, 12);
        Assert.Equal(4.302652729911275 * 1.0 / Math.Sqrt(3), half, 9);   // t_{0.975, 2} · s / √n, s = 1
        Assert.Equal(0.0, SeedStatistics.MeanCi95([5.0]).HalfWidth);
        var e = Assert.Throws<WhaleArgumentException>(() => SeedStatistics.MeanCi95([]));
        Assert.Contains("values", e.Message);
    }

    [Fact]
    public void PairingUsesTheSeedsPresentInBothAndRemovesEachSeedsOffset()
    {
        // Seeds 0–2 differ by large offsets (0, 1, 2) that both sides share; seed 3 exists on one side only.
        var before = new Dictionary<int, double> { [0] = 0.10, [1] = 1.10, [2] = 2.10, [3] = 9.0 };
        var after = new Dictionary<int, double> { [2] = 2.07, [0] = 0.08, [1] = 1.09, [4] = -5.0 };
        var d = SeedStatistics.Paired(before, after)!.Value;
        Assert.Equal(3, d.Pairs);
        double[] diffs = [-0.03, -0.02, -0.01];                            // after − before for seeds 2, 0, 1
        var (mean, half) = SeedStatistics.MeanCi95(diffs);
        Assert.Equal(mean, d.Mean, 12);
        Assert.Equal(half, d.Ci95, 12);
        Assert.Equal(-0.02, d.Mean, 12);
        // Unpaired, the offsets would swamp the difference: the interval of each side alone is ~100× wider.
        Assert.True(SeedStatistics.MeanCi95([0.08, 1.09, 2.07]).HalfWidth > 50 * d.Ci95);
    }

    [Fact]
    public void PairingWithNoCommonSeedIsNull()
    {
        Assert.Null(SeedStatistics.Paired(new Dictionary<int, double> { [0] = 1 }, new Dictionary<int, double> { [1] = 2 }));
        var one = SeedStatistics.Paired(new Dictionary<int, double> { [5] = 1.0 }, new Dictionary<int, double> { [5] = 1.5 })!.Value;
        Assert.Equal((1, 0.5, 0.0), (one.Pairs, one.Mean, one.Ci95));
    }
}
