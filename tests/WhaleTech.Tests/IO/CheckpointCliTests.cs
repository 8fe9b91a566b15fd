using WhaleTech.Cli;
using WhaleTech.IO;
using WhaleTech.Hub;

namespace WhaleTech.Tests.IO;

/// <summary>`whale checkpoint …`, run in-process on tiny checkpoints.</summary>
public class CheckpointCliTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("whale-ckpt-cli-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    static int Whale(params string[] args) => WhaleTech.Cli.Cli.Run(WhaleCommands.Root(), args);

    [Fact]
    public void ExportInspectConvertParityAndGenerate()
    {
        Assert.Equal(0, Whale("checkpoint", "export-parity", _dir));
        var v3 = Path.Combine(_dir, "v3");
        Assert.Equal(0, Whale("checkpoint", "inspect", v3));
        Assert.Equal(0, Whale("checkpoint", "inspect", v3, "--json"));
        Assert.Equal(0, Whale("checkpoint", "parity", v3, "--device", "cpu"));
        Assert.Equal(0, Whale("checkpoint", "generate", v3, "--device", "cpu", "--ids", "1,2,3", "--ids", "4,5", "--max-new-tokens", "3"));

        var fp8 = Path.Combine(_dir, "v3-fp8");
        Assert.Equal(0, Whale("checkpoint", "convert", v3, fp8, "--device", "cpu", "--fp8", "--max-shard-mb", "1"));
        var r = HubInspection.Of(fp8);
        Assert.True(r.Fp8Weights > 0);
        Assert.Equal(128, r.Fp8BlockSize);
        Assert.Empty(r.Missing);
        Assert.Empty(r.Unexpected);
        Assert.Equal(HubInspection.Of(v3).Parameters, r.Parameters);
    }

    [Fact]
    public void InspectListsMissingNamesAndUsageErrorsExitWithTwo()
    {
        Assert.Equal(2, Whale("checkpoint", "inspect", Path.Combine(_dir, "nothing")));
        Assert.Equal(2, Whale("checkpoint", "parity", _dir));
        Assert.Equal(0, Whale("checkpoint", "export-parity", _dir));
        Assert.Equal(2, Whale("checkpoint", "generate", Path.Combine(_dir, "v2-lite"), "--ids", "1,x"));
        var inspection = HubInspection.Of(Path.Combine(_dir, "v2-lite"));
        Assert.Empty(inspection.Missing);
        Assert.Equal("deepseek_v2", inspection.Config.ModelType);
        Assert.Empty(inspection.MtpLayers);
    }
}
