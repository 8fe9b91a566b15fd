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
    public void UsageErrorsExitWithTwo(params string[] args) => Assert.Equal(2, Whale(args));

    [Fact]
    public void TrainThenSpeculate()
    {
        var model = Path.Combine(_dir, "m");
        Assert.Equal(0, Whale("mtp", "train", "--device", "cpu", "--steps", "2", "--hidden", "16", "--layers", "1", "--heads", "2", "--depth", "2", "--batch", "2", "--seq-len", "16", "--out", model));
        Assert.Equal(2, WhaleTech.Model.ModelConfig.Load(Path.Combine(model, "config.json")).NumNextnPredictLayers);
        Assert.Equal(0, Whale("mtp", "speculate", "--device", "cpu", "--model", model, "--prompt", "1+2=", "--new-tokens", "6", "--repetitions", "1", "--warmup", "0"));
    }
}
