using WhaleTech.Cli.Commands;
using WhaleTech.Cli.Tour;
using WhaleTech.Grpo;
using WhaleTech.Lab.Grpo;
using WhaleTech.Moe;
using WhaleTech.Lab.Moe;

namespace WhaleTech.Tests.Plots;

/// <summary>Every plot-producing function writes a readable PNG (see <see cref="PngAssert"/>).</summary>
public class PlotTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("whale-plots-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    [Fact]
    public void TourLinesWithALabeledReferenceLine()
    {
        var path = Path.Combine(_dir, "lines.png");
        double[] x = [0, 1, 2, 3, 4];
        PngPlot.Lines(path, "t", "step", "loss", [("train", x, [3, 2.5, 2, 1.8, 1.7]), ("eval", x, [3.1, 2.6, 2.2, 2, 1.9])], 2.4, "unigram entropy");
        PngAssert.Readable(path);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TourBarsOnALogOrLinearAxis(bool logY)
    {
        var path = Path.Combine(_dir, $"bars-{logY}.png");
        PngPlot.Bars(path, "t", "elements", [("MHA", 32768), ("GQA-8", 2048), ("MQA", 256), ("MLA latent", 576)], logY);
        PngAssert.Readable(path);
    }

    [Fact]
    public void LogBarsRejectNonPositiveValues()
        => Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => PngPlot.Bars(Path.Combine(_dir, "bad.png"), "t", "y", [("a", 1), ("b", 0)], logY: true));

    [Fact]
    public void GrpoRewardAndAccuracyPlots()
    {
        var history = Enumerable.Range(1, 30).Select(s =>
        {
            var m = new SortedDictionary<string, double> { ["step"] = s, ["reward"] = s / 30.0 };
            if (s % 5 == 0) m["eval/accuracy"] = Math.Min(1, s / 25.0);
            return m;
        }).ToList();
        GrpoPlots.Write(history, _dir);
        PngAssert.Readable(Path.Combine(_dir, "reward.png"));
        PngAssert.Readable(Path.Combine(_dir, "accuracy.png"));
    }

    [Fact]
    public void MoeDilemmaWithIntervalsReachingBelowZero()
    {
        var path = Path.Combine(_dir, "dilemma.png");
        LoadPlots.Dilemma([("none", 1.56, 0.02, 0.05, 0.30), ("aux α=1e-2", 1.57, 0.01, 0.34, 0.1), ("loss-free γ=1e-3", 1.565, 0.02, 0.13, 0.11)], path, "t");
        PngAssert.Readable(path);
    }

    [Theory]
    [InlineData(0.5, 0.2, 0.2)]
    [InlineData(0.05, 0.3, 0.05)]    // an interval reaching below 0 stops at 0
    [InlineData(0.0, 0.1, 0.0)]
    public void ErrorBarsAreClippedAtZero(double value, double ci, double lower) => Assert.Equal(lower, LoadPlots.ClipAtZero(value, ci), 12);

    [Theory]
    [InlineData(3e-5, "3.0e-05")]
    [InlineData(0.005, "5.0e-03")]
    [InlineData(0.5, "0.5000")]
    [InlineData(-0.25, "-0.2500")]
    [InlineData(150, "150")]
    [InlineData(0, "0")]
    public void GrpoLiveTableShowsSmallValues(double v, string expected) => Assert.Equal(expected, GrpoCommand.FormatMetric(v));
}
