using System.Text.Json;
using TorchSharp;
using WhaleTech.Lab.Bench;
using WhaleTech.Runtime;

namespace WhaleTech.Tests.Bench;

public class BenchTests
{
    [Fact]
    public void MeasureRunsWarmupAndRepetitionsAndReportsOrderedStatistics()
    {
        Backend.Initialize();
        int calls = 0;
        using var a = torch.ones(64, 64);
        var t = Measure.Run(torch.CPU, () => { calls++; _ = a.matmul(a); }, warmup: 2, repetitions: 7);
        Assert.Equal(9, calls);
        Assert.Equal(7, t.Repetitions);
        Assert.True(t.MinMs >= 0);
        Assert.True(t.MinMs <= t.P10Ms && t.P10Ms <= t.MedianMs && t.MedianMs <= t.P90Ms && t.P90Ms <= t.SamplesMs.Max());
    }

    [Fact]
    public void EachRepetitionDisposesItsTemporaries()
    {
        Backend.Initialize();
        using var a = torch.ones(8);
        var made = new List<torch.Tensor>();
        Measure.Run(torch.CPU, () => made.Add(a + 1), warmup: 1, repetitions: 3);
        Assert.Equal(4, made.Count);
        Assert.All(made, x => Assert.True(x.IsInvalid));
    }

    [Fact]
    public void PercentilesInterpolateLikeNumpy()
    {
        var t = Timing.FromSamples([5, 1, 4, 2, 3]);           // sorted 1..5
        Assert.Equal(3, t.MedianMs, 12);
        Assert.Equal(1.4, t.P10Ms, 12);                         // 0.1·4 = 0.4 → 1 + 0.4·(2-1)
        Assert.Equal(4.6, t.P90Ms, 12);
        Assert.Equal(1, t.MinMs);
        Assert.Throws<WhaleArgumentException>(() => Measure.Run(torch.CPU, () => { }, repetitions: 0));
    }

    static BenchmarkResult Sample(bool numericX)
    {
        var r = new BenchmarkResult("unit-test", "A made-up result.", MachineInfo.Collect(torch.CPU)) { Command = "whale-bench unit-test --quick" };
        r.With("device", "cpu").With("quick", true).With("repetitions", 5);
        foreach (var v in new[] { "fp32", "bf16" })
            foreach (var n in new[] { 64, 128, 256 })
                r.AddRow(v).With("n", numericX ? n : $"size-{n}").Add("tflops", n / 100.0 * (v == "bf16" ? 2 : 1), "TFLOP/s")
                 .AddTiming(Timing.FromSamples([1.0, 2.0, 3.0]));
        r.Plot = new PlotSpec("tflops", "n", LogX: true);
        return r;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void WriterProducesJsonMarkdownAndPngThatParse(bool numericX)
    {
        var dir = Path.Combine(Path.GetTempPath(), "whale-bench-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var r = Sample(numericX);
            var files = ResultWriter.Write(r, dir);
            Assert.Equal(new[] { "unit-test.json", "unit-test.md", "unit-test.png" },
                Directory.GetFiles(dir).Select(Path.GetFileName).Order().ToArray());   // no temp files left

            var back = BenchmarkResult.Load(files.Json);
            Assert.Equal("unit-test", back.Suite);
            Assert.Equal(r.Machine, back.Machine);
            Assert.Equal(6, back.Rows.Count);
            Assert.Equal(5.12, back.Rows[5].Metric("tflops")!.Value, 12);
            Assert.Equal(numericX ? "256" : "size-256", back.Rows[5].Parameters["n"]);
            Assert.Equal("true", back.Parameters["quick"]);
            using (var doc = JsonDocument.Parse(File.ReadAllText(files.Json)))
            {
                Assert.Equal(JsonValueKind.Number, doc.RootElement.GetProperty("parameters").GetProperty("repetitions").ValueKind);
                Assert.Equal(JsonValueKind.True, doc.RootElement.GetProperty("parameters").GetProperty("quick").ValueKind);
            }

            var md = File.ReadAllText(files.Markdown);
            Assert.Contains("| variant | n | tflops (TFLOP/s) | median_ms (ms) |", md);
            Assert.Contains("| bf16 | " + (numericX ? "256" : "size-256") + " | 5.1200 | 2.0000 |", md);
            Assert.Contains(r.Machine!.ToString(), md);
            Assert.Contains("Reproduce: `whale-bench unit-test --quick`", md);
            Assert.Contains("](unit-test.png)", md);

            Plots.PngAssert.Readable(files.Png!);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Fact]
    public void BadInputIsNamed()
    {
        var e = Assert.Throws<WhaleArgumentException>(() => new BenchmarkResult("a/b", "", MachineInfo.Collect(torch.CPU)));
        Assert.Contains("suite", e.Message);
        var r = Sample(true);
        r.Plot = new PlotSpec("nope", "n");
        Assert.Contains("plot.metric", Assert.Throws<WhaleArgumentException>(() => ResultWriter.RenderPng(r)).Message);
        Assert.Throws<WhaleFormatException>(() => BenchmarkResult.FromJson("[1,2]", "x.json"));
    }

    [Fact]
    public void MachineTagIsAFolderName()
    {
        Assert.Equal("intel-xeon-platinum-8375c", MachineTag.Slug("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"));
        Assert.Equal("nvidia-h100-80gb-hbm3", MachineTag.Slug("NVIDIA H100 80GB HBM3"));
        var tag = MachineTag.For(MachineInfo.Collect(torch.CPU));
        Assert.StartsWith("cpu-", tag);
        Assert.Matches("^[a-z0-9-]+$", tag);
    }
}
