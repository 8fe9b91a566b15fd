using WhaleTech.Cli;

namespace WhaleTech.Tests.Cli;

/// <summary>The `whale` commands, run in-process: exit codes, outputs, and the tour (quick).</summary>
public class CliTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("whale-cli-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    static int Whale(params string[] args) => WhaleTech.Cli.Cli.Run(WhaleCommands.Root(), args);

    [Theory]
    [InlineData("info", "--bogus")]
    [InlineData("nonsense")]
    [InlineData("info", "--device", "tpu")]
    [InlineData("train", "lm", "--steps", "0")]
    [InlineData("train", "lm", "--attention", "xla")]
    [InlineData("train", "lm", "--optimizer-moments", "fp16")]
    [InlineData("fp8", "train", "--optimizer-moments", "fp32,int8")]
    [InlineData("grpo", "sft", "--optimizer-moments", "fp8")]
    [InlineData("generate", "--model", "/definitely/not/here")]
    [InlineData("generate", "--top-p", "1.5")]
    public void UsageErrorsExitWithTwo(params string[] args) => Assert.Equal(2, Whale(args));

    [Fact]
    public void InfoRuns() => Assert.Equal(0, Whale("info", "--device", "cpu", "--json"));

    [Fact]
    public void TrainSavesAModelThatGenerateLoads()
    {
        var model = Path.Combine(_dir, "m");
        Assert.Equal(0, Whale("train", "lm", "--device", "cpu", "--steps", "3", "--hidden", "32", "--layers", "1", "--out", model));
        Assert.True(File.Exists(Path.Combine(model, "config.json")));
        Assert.True(File.Exists(Path.Combine(model, "model.safetensors")));
        Assert.Equal(0, Whale("generate", "--device", "cpu", "--model", model, "--prompt", "1+2=", "--prompt", "the cat", "--max-new-tokens", "4"));
        Assert.Equal(0, Whale("generate", "--device", "cpu", "--model", model, "--prompt", "ab", "--temperature", "0.8", "--top-k", "5", "--top-p", "0.9", "--mla-mode", "absorbed", "--max-new-tokens", "4"));
    }

    [Fact]
    public void QuickTourWritesItsReportAndPlots()
    {
        var outDir = Path.Combine(_dir, "tour");
        Assert.Equal(0, Whale("tour", "--quick", "--out", outDir));                 // no --device: auto
        var report = File.ReadAllText(Path.Combine(outDir, "report.md"));
        Assert.Contains("| chapter | result |", report);
        Assert.Contains($"Command: `whale tour --quick --out {outDir}` (", report);  // as typed: no --device added
        foreach (var png in Directory.GetFiles(outDir, "*.png")) Plots.PngAssert.Readable(png);
        Assert.True(Directory.GetFiles(outDir, "*.png").Length >= 6);
    }
}
