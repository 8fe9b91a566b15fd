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
    public void OneSeedIsWrittenWithoutAnInterval()
    {
        Assert.Equal("0.0061 ± 0.0011", SeedStatistics.MeanCiCell(0.00612, 0.00107, 6));
        Assert.Equal("0.0061 (1 seed)", SeedStatistics.MeanCiCell(0.00612, 0, 1));     // not "± 0.0000", which reads as certainty
        Assert.Equal("+0.0009 ± 0.0004", SeedStatistics.MeanCiCell(0.0009, 0.0004, 3, signed: true));
        Assert.Equal("−0.0002 (1 seed)", SeedStatistics.MeanCiCell(-0.0002, 0, 1, signed: true));
        Assert.Equal("5,333 ± 1,734", SeedStatistics.MeanCiCell(5333, 1734, 6, format: "N0"));
    }

    [Fact]
    public void AMeanThatRoundsToZeroHasNoSign()
    {
        Assert.Equal("0.0000 ± 0.0013", SeedStatistics.MeanCiCell(-0.00003, 0.0013, 3, signed: true));   // not "−0.0000"
        Assert.Equal("0.0000 ± 0.0013", SeedStatistics.MeanCiCell(0.00003, 0.0013, 3, signed: true));    // not "+0.0000"
        Assert.Equal("0.0000", SeedStatistics.Number(-0.00003));
        Assert.Equal("−0.0001", SeedStatistics.Number(-0.00006, signed: true));                           // rounds away from 0
        Assert.Equal("+0.0001", SeedStatistics.Number(0.00006, signed: true));
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
    [Fact]
    public void SeedsToBoundIsTheFewestSeedsWhoseIntervalClearsTheBound()
    {
        // m = 0.0007, s = 0.00065, b = 0.001: need t_{0.975, n−1}/√n < 0.3/0.65 = 0.4615; n = 20 gives 2.0930/√20 = 0.4680,
        // n = 21 gives 2.0860/√21 = 0.4552.
        Assert.Equal(21, SeedStatistics.SeedsToBound(0.0007, 0.00065, 0.001));
        Assert.Equal(2, SeedStatistics.SeedsToBound(0.0, 0.0, 0.001));                      // no spread: any two seeds pass
        Assert.Null(SeedStatistics.SeedsToBound(0.001, 0.0, 0.001));                         // a mean on the bound never passes
        Assert.Null(SeedStatistics.SeedsToBound(0.0009, 1.0, 0.001, most: 100));             // more than the cap
        // The answer passes and one seed fewer does not.
        foreach (var (m, sd) in new[] { (0.0002, 0.0004), (0.0005, 0.0016), (-0.0003, 0.002) })
        {
            int n = SeedStatistics.SeedsToBound(m, sd, 0.001)!.Value;
            double Upper(int k) => m + MathNet.Numerics.Distributions.StudentT.InvCDF(0, 1, k - 1, 0.975) * sd / Math.Sqrt(k);
            Assert.True(Upper(n) < 0.001);
            if (n > 2) Assert.True(Upper(n - 1) >= 0.001);
        }
        Assert.Throws<WhaleArgumentException>(() => SeedStatistics.SeedsToBound(0, -1, 0.001));
    }

    [Fact]
    public void SdFromCi95InvertsTheInterval()
    {
        double[] xs = [0.3, 0.1, 0.7, 0.4];
        var (_, half) = SeedStatistics.MeanCi95(xs);
        double sd = MathNet.Numerics.Statistics.Statistics.StandardDeviation(xs);
        Assert.Equal(sd, SeedStatistics.SdFromCi95(half, xs.Length), 12);
        Assert.Equal(0.0, SeedStatistics.SdFromCi95(0.5, 1));
    }
}
