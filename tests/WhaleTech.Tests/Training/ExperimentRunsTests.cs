// The experiments' shared run folder (Lab/Runs/ExperimentRuns), in process: a stop between runs leaves a partial
// result of the finished runs; a resume reads finished runs back from their result records instead of training
// them again (a doctored record shows it), finishes the rest, and ends equal to an uninterrupted experiment;
// a resume with other options, or without an earlier experiment, is refused before any work.
using TorchSharp;
using WhaleTech.Lab.Mla;
using WhaleTech.Lab.Runs;
using WhaleTech.Runtime;
using WhaleTech.Training;

namespace WhaleTech.Tests.Training;

public class ExperimentRunsTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("whale-runs-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    static readonly MlaQualityOptions Tiny = new()
    {
        Attentions = ["mqa", "mla"], Seeds = 2, Loop = new MlaQualityOptions().Loop with { Steps = 4, BatchSize = 4 }, EvalSequences = 8, Model = new MlaQualityOptions().Model with { Hidden = 32 }, Pairs = 4, Queries = 2, Keys = 8, Values = 8,
    };

    [Fact]
    public void AResumeSkipsFinishedRunsAndEndsEqualToAnUninterruptedExperiment()
    {
        var reference = MlaQuality.Run(Tiny, torch.CPU);
        var runsDir = Path.Combine(_dir, "runs");

        // A stop asked for while the second run finishes: that run completes, the third never starts.
        using var stop = StopSignal.Manual();
        int logged = 0;
        var first = new ExperimentRuns(runsDir, checkpointEvery: 2, stop: stop);
        var partial = MlaQuality.Run(Tiny, torch.CPU, _ => { if (++logged == 2) stop.Request(); }, first);
        Assert.True(first.Interrupted && partial.Partial);
        Assert.Equal(reference.Runs.Take(2), partial.Runs);
        Assert.True(File.Exists(Path.Combine(runsDir, "mqa-seed-1", ExperimentRuns.ResultFile)));
        Assert.False(Directory.Exists(Path.Combine(runsDir, "mqa-seed-1", ExperimentRuns.CheckpointDir)));   // dropped once finished

        // Doctor a finished run's record: the resume must read it back, not train that run again.
        var record = Path.Combine(runsDir, "mqa-seed-0", ExperimentRuns.ResultFile);
        var original = File.ReadAllText(record);
        var node = System.Text.Json.Nodes.JsonNode.Parse(original)!;
        node["EvalLoss"] = 42.0;
        File.WriteAllText(record, node.ToJsonString());
        var doctored = new ExperimentRuns(runsDir, resume: true);
        var resumed = MlaQuality.Run(Tiny, torch.CPU, runs: doctored);
        Assert.Equal(2, doctored.Reused);
        Assert.Equal(42, resumed.Runs[0].EvalLoss);
        Assert.Equal(reference.Runs.Skip(1), resumed.Runs.Skip(1));           // the other finished one read back, the rest trained
        Assert.False(resumed.Partial);

        // With the true record, a resume of the finished experiment trains nothing and equals the reference.
        File.WriteAllText(record, original);
        var again = new ExperimentRuns(runsDir, resume: true);
        var all = MlaQuality.Run(Tiny, torch.CPU, runs: again);
        Assert.Equal(4, again.Reused);
        Assert.Equal(reference.Runs, all.Runs);
        Assert.Equal(reference.Summary, all.Summary);
        Assert.Equal(Enumerable.Range(1, Tiny.Loop.Steps), File.ReadAllLines(Path.Combine(runsDir, "mla-seed-1", MetricsLog.JsonlFile))
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("step").GetInt32()));
    }

    [Fact]
    public void AResumeIsRefusedBeforeAnyWorkWithOtherOptionsOrNoEarlierExperiment()
    {
        var runsDir = Path.Combine(_dir, "runs");
        Assert.Throws<WhaleArgumentException>(() => new ExperimentRuns(runsDir, resume: true));
        Assert.Throws<WhaleArgumentException>(() => new ExperimentRuns(null, resume: true));
        Assert.Throws<WhaleArgumentException>(() => new ExperimentRuns(runsDir, checkpointEvery: -1));
        var o = Tiny with { Attentions = ["mqa"], Seeds = 1, Loop = Tiny.Loop with { Steps = 1 } };
        MlaQuality.Run(o, torch.CPU, runs: new ExperimentRuns(runsDir));
        var e = Assert.Throws<WhaleArgumentException>(() => MlaQuality.Run(o with { Loop = o.Loop with { Steps = 2 } }, torch.CPU, runs: new ExperimentRuns(runsDir, resume: true)));
        Assert.Contains("same experiment and options", e.Message);
        // A fresh start clears an earlier experiment's runs, but never a "runs" folder holding something else.
        var foreign = Path.Combine(_dir, "models", "runs");
        Directory.CreateDirectory(Path.Combine(foreign, "tiny-lm"));
        Assert.Throws<WhaleArgumentException>(() => new ExperimentRuns(foreign).Begin("test", o));
        Assert.True(Directory.Exists(Path.Combine(foreign, "tiny-lm")));
    }

    [Fact]
    public void RunNamesBecomeDistinctFolderNames()
    {
        Assert.Equal("aux-1e-2-seed-0", ExperimentRuns.Slug("aux α=1e-2 seed 0"));
        Assert.Equal("hybrid-tensor-bf16-moments-seed-1", ExperimentRuns.Slug("hybrid-tensor+bf16-moments seed 1"));
        var runs = new ExperimentRuns(Path.Combine(_dir, "runs"));
        using var a = runs.Open("a+b");
        Assert.Throws<WhaleArgumentException>(() => runs.Open("a b"));        // same folder, other run: refused
    }
}
