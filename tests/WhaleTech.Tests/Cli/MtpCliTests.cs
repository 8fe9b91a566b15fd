using WhaleTech.Cli;

namespace WhaleTech.Tests.Cli;

/// <summary>`whale mtp train|speculate`, in-process and tiny.</summary>
public class MtpCliTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("whale-mtp-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    static int Whale(params string[] args) => WhaleTech.Cli.Cli.Run(WhaleCommands.Root(), args);

    [Theory]
    [InlineData("mtp", "train", "--depth", "0")]
    [InlineData("mtp", "train", "--mtp-weight", "-1")]
    [InlineData("mtp", "speculate", "--model", "/definitely/not/here")]
    [InlineData("mtp", "speculate", "--batch-size", "0")]
    [InlineData("mtp", "speculate", "--temperature", "-1")]
    [InlineData("mtp", "speculate", "--top-p", "0")]
    [InlineData("mtp", "speculate", "--top-k", "-2")]
    [InlineData("mtp", "speculate", "--name", "a/b")]
    public void UsageErrorsExitWithTwo(params string[] args) => Assert.Equal(2, Whale(args));

    [Fact]
    public void TrainThenSpeculate()
    {
        var model = Path.Combine(_dir, "m");
        Assert.Equal(0, Whale("mtp", "train", "--device", "cpu", "--steps", "2", "--hidden", "16", "--layers", "1", "--heads", "2", "--depth", "2", "--batch", "2", "--seq-len", "16", "--out", model));
        Assert.Equal(2, WhaleTech.Core.ModelConfig.Load(Path.Combine(model, "config.json")).NumNextnPredictLayers);
        Assert.Equal(0, Whale("mtp", "speculate", "--device", "cpu", "--model", model, "--prompt", "1+2=", "--new-tokens", "6", "--repetitions", "1", "--warmup", "0"));
        // The held-out eval line is in the JSON: main loss and one loss per MTP depth.
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(model, "train-results.json")));
        var eval = json.RootElement.GetProperty("eval");
        Assert.True(eval.GetProperty("main").GetDouble() > 0);
        Assert.Equal(2, eval.GetProperty("mtp_depths").GetArrayLength());
        // Batched greedy (identical tokens → exit 0) and batched sampling, written as a result file.
        var results = Path.Combine(_dir, "results");
        Assert.Equal(0, Whale("mtp", "speculate", "--device", "cpu", "--model", model, "--prompt", "1+2=", "the ", "ab", "--new-tokens", "5",
                              "--batch-size", "2", "--repetitions", "1", "--warmup", "0"));
        Assert.Equal(0, Whale("mtp", "speculate", "--device", "cpu", "--model", model, "--prompt", "1+2=", "the ", "--new-tokens", "5", "--batch-size", "2",
                              "--temperature", "0.7", "--top-k", "5", "--top-p", "0.9", "--seed", "3", "--repetitions", "1", "--warmup", "0", "--out", results));
        Assert.True(File.Exists(Path.Combine(results, "mtp-speculate-1l-b2-t0p7.json")));
    }
}
