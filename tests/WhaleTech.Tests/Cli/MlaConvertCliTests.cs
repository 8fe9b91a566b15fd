using WhaleTech.Cli;
using WhaleTech.Hub;
using WhaleTech.Model;
using WhaleTech.Tests.Model;
using static TorchSharp.torch;

namespace WhaleTech.Tests.Cli;

/// <summary>`whale mla convert` on a checkpoint folder and `whale mla frontier --quick`.</summary>
public class MlaConvertCliTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("whale-mla-convert-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    static int Whale(params string[] args) => WhaleTech.Cli.Cli.Run(WhaleCommands.Root(), args);

    [Fact]
    public void ConvertWritesAHubMlaCheckpointWithTheSourceLogits()
    {
        var src = Path.Combine(_dir, "mqa");
        var dst = Path.Combine(_dir, "mla");
        using var model = MlaConversionTests.Sharp(MlaConversionTests.Source("mqa"));
        model.SavePretrained(src);
        Assert.Equal(0, Whale("mla", "convert", src, "--out", dst));
        var (mla, _) = DeepSeekLM.FromPretrained(dst);
        using var _m = mla;
        mla.eval();
        Assert.Equal("mla", mla.Config.Attention);
        Assert.Equal(8, mla.Config.KvLoraRank);
        Assert.Equal(8, mla.Config.QkRopeHeadDim);
        using var g = no_grad();
        var ids = TorchSharp.torch.randint(0, 32, [2, 16]);
        double diff = (mla.forward(ids) - model.forward(ids)).abs().max().item<float>() / Math.Max(1.0, model.forward(ids).abs().max().item<float>());
        Assert.True(diff <= 1e-5, $"{diff}");
        // MHA2MLA options and a JSON report
        var mha = Path.Combine(_dir, "mha");
        using var mhaModel = MlaConversionTests.Sharp(MlaConversionTests.Source("mha"));
        mhaModel.SavePretrained(mha);
        Assert.Equal(0, Whale("mla", "convert", mha, "--kv-lora-rank", "12", "--rope-dims", "4", "--strategy", "2-norm", "--svd", "separate", "--latent-norm", "rms", "--json", "--out", Path.Combine(_dir, "mla2")));
        var (m2, _) = DeepSeekLM.FromPretrained(Path.Combine(_dir, "mla2"));
        using var _m2 = m2;
        Assert.Equal(12, m2.Config.KvLoraRank);
        Assert.Equal(4, m2.Config.QkRopeHeadDim);
    }

    [Theory]
    [InlineData("--strategy", "middle")]
    [InlineData("--svd", "qr")]
    [InlineData("--rope-dims", "3")]
    [InlineData("--latent-norm", "layer")]
    public void BadConvertOptionsExitWithTwo(string option, string value)
    {
        var src = Path.Combine(_dir, "gqa");
        using var model = new DeepSeekLM(MlaConversionTests.Source("gqa", kvHeads: 2));
        model.SavePretrained(src);
        Assert.Equal(2, Whale("mla", "convert", src, option, value, "--out", Path.Combine(_dir, "x")));
    }

    [Fact]
    public void ConvertRefusesAnMlaCheckpointAndAMissingFolder()
    {
        var src = Path.Combine(_dir, "already");
        using var model = new DeepSeekLM(WhaleTech.Core.ModelConfig.Tiny("mla"));
        model.SavePretrained(src);
        Assert.Equal(2, Whale("mla", "convert", src, "--out", Path.Combine(_dir, "x")));
        Assert.Equal(2, Whale("mla", "convert", Path.Combine(_dir, "nope"), "--out", Path.Combine(_dir, "y")));
    }

    [Fact]
    public void FrontierQuickWritesTableJsonAndPlots()
    {
        var outDir = Path.Combine(_dir, "frontier");
        Assert.Equal(0, Whale("mla", "frontier", "--quick", "--seeds", "2", "--steps", "40", "--eval-every", "20", "--device", "cpu", "--out", outDir));
        foreach (var f in new[] { "mla-frontier.json", "mla-frontier.md", "mla-frontier.png", "mla-frontier-curves.png" })
            Assert.True(File.Exists(Path.Combine(outDir, f)), f);
        Plots.PngAssert.Readable(Path.Combine(outDir, "mla-frontier.png"));
        Assert.Contains("Verdict", File.ReadAllText(Path.Combine(outDir, "mla-frontier.md")));
        var again = Path.Combine(_dir, "again");
        Assert.Equal(0, Whale("mla", "frontier", "--from", Path.Combine(outDir, "mla-frontier.json"), "--out", again));
        Assert.Equal(File.ReadAllText(Path.Combine(outDir, "mla-frontier.md")), File.ReadAllText(Path.Combine(again, "mla-frontier.md")));
        Assert.Equal(2, Whale("mla", "frontier", "--variants", "gqa0", "--steps", "10"));
        Assert.Equal(2, Whale("mla", "frontier", "--from", Path.Combine(_dir, "missing.json"), "--out", again));
    }

    /// <summary>`--eval-sets` scores the final models on shared sets: the report gains the KL table and the eval-noise
    /// section, the JSON carries the scores through `--from`, and a bad count is refused before any training.</summary>
    [Fact]
    public void FrontierEvalSetsReportTheEvalNoise()
    {
        var outDir = Path.Combine(_dir, "noise");
        Assert.Equal(0, Whale("mla", "frontier", "--task", "language", "--topics", "2", "--length", "12", "--symbols", "8", "--variants", "mha", "mqa",
            "--seeds", "2", "--steps", "20", "--eval-every", "10", "--eval-sets", "2", "--device", "cpu", "--out", outDir));
        var md = File.ReadAllText(Path.Combine(outDir, "mla-frontier.md"));
        Assert.Contains("## Eval noise", md);
        Assert.Matches(@"\| mqa \| [0-9.]+ ± [0-9.]+ \| 2 shared \| [−+][0-9.]+ ± [0-9.]+ \| 2 shared \|", md);   // the KL table: over the shared sets
        var again = Path.Combine(_dir, "noise-again");
        Assert.Equal(0, Whale("mla", "frontier", "--from", Path.Combine(outDir, "mla-frontier.json"), "--out", again));
        Assert.Equal(md, File.ReadAllText(Path.Combine(again, "mla-frontier.md")));
        Assert.All(WhaleTech.Lab.Mla.MlaFrontier.Read(Path.Combine(again, "mla-frontier.json")).Result.Runs, r => Assert.Equal(2, r.EvalSets!.Count));
        Assert.Equal(2, Whale("mla", "frontier", "--eval-sets", "-1", "--steps", "10"));
    }

    [Fact]
    public void FrontierSeedsSplitOverProcessesAndLengthsPoolIntoAConvergenceTest()
    {
        // One length in one process, the other split by --first-seed over two; --from pools all three files.
        string[] task = ["mla", "frontier", "--task", "language", "--topics", "2", "--length", "12", "--symbols", "8", "--variants", "mqa", "--device", "cpu"];
        string Train(string name, int steps, params string[] seeds)
        {
            var dir = Path.Combine(_dir, name);
            Assert.Equal(0, Whale([.. task, "--steps", steps.ToString(), "--eval-every", "10", .. seeds, "--out", dir]));
            return Path.Combine(dir, "mla-frontier.json");
        }
        var shortRun = Train("short", 20, "--seeds", "2");
        var longSeed0 = Train("long-s0", 40, "--seeds", "1");
        var longSeed1 = Train("long-s1", 40, "--seeds", "1", "--first-seed", "1");
        var pooled = Path.Combine(_dir, "pooled");
        Assert.Equal(0, Whale("mla", "frontier", "--from", shortRun, longSeed0, longSeed1, "--out", pooled));
        var md = File.ReadAllText(Path.Combine(pooled, "mla-frontier.md"));
        Assert.Contains("## Convergence across run lengths", md);
        Assert.Contains("converged (the last step change gains < 0.001 nats per doubling at 95 % confidence): none", md);   // 20 → 40 steps still learns
        Plots.PngAssert.Readable(Path.Combine(pooled, "mla-frontier-convergence.png"));
        var (result, _, _) = WhaleTech.Lab.Mla.MlaFrontier.Read(Path.Combine(pooled, "mla-frontier.json"));
        Assert.Equal((40, 2, false), (result.Options.Loop.Steps, result.Runs.Count, result.Partial));         // the longest length, both seeds
        var change = result.Convergence!.Variants.Single().Changes.Single();
        Assert.Equal((20, 40, 2), (change.FromSteps, change.ToSteps, change.Pairs));
        // A tolerance above the measured gain's upper bound passes the same runs.
        var lenient = Path.Combine(_dir, "lenient");
        Assert.Equal(0, change.Kl!.Sets);                                     // every run recorded its own-set KL: the test uses it
        Assert.InRange(change.TestedGainPerDoubling + change.TestedGainCi95PerDoubling, 0.001, 9);
        Assert.Equal(0, Whale("mla", "frontier", "--from", shortRun, longSeed0, longSeed1, "--converged-gain", "9", "--out", lenient));
        Assert.True(WhaleTech.Lab.Mla.MlaFrontier.Read(Path.Combine(lenient, "mla-frontier.json")).Result.Convergence!.Variants.Single().Converged);
        // The same seed twice is refused, with the seed named.
        Assert.Equal(2, Whale("mla", "frontier", "--from", longSeed0, longSeed0, "--out", Path.Combine(_dir, "twice")));
    }

    [Fact]
    public void FrontierOnTheLanguageReportsExcessLossOverTheBayesLoss()
    {
        var outDir = Path.Combine(_dir, "frontier-language");
        Assert.Equal(0, Whale("mla", "frontier", "--task", "language", "--topics", "2", "--length", "12", "--symbols", "8", "--variants", "mqa", "mla-8-4",
                              "--seeds", "2", "--steps", "30", "--eval-every", "10", "--device", "cpu", "--out", outDir));
        var md = File.ReadAllText(Path.Combine(outDir, "mla-frontier.md"));
        Assert.Contains("topic-mixture bigram language, 2 topics × 8 symbols", md);
        Assert.Contains("Bayes predictor's NLL", md);
        Assert.Contains("paired Δ vs mqa", md);                                    // mqa has the larger cache of the two
        Assert.Equal(2, Whale("mla", "frontier", "--task", "poetry", "--steps", "10"));
        Assert.Equal(2, Whale("mla", "frontier", "--task", "language", "--topics", "0", "--steps", "10"));
    }
}
