// The run folder of an experiment that trains many models (one per method/variant/recipe × seed: `whale moe
// experiment`, `whale fp8 train`, `whale mla quality`, `whale mla frontier`), shared by all of them:
//   <runs>/experiment.json            what the experiment is (its options); a resume must match it
//   <runs>/<run>/metrics.jsonl        every step's scalars, and tensorboard/ (Training/MetricsLog)
//   <runs>/<run>/checkpoint/          while the run trains: weights, AdamW state, step, data position and the
//                                     loop's own state, every N steps and on Ctrl-C (Training/RunCheckpoint)
//   <runs>/<run>/result.json          the finished run's result record, written atomically; the checkpoint is
//                                     then dropped, and a resume reads the record back instead of training
// <runs> is <out>/runs for the commands whose --out is a folder, <out>.runs for `whale fp8 train` (a file prefix).
// The first Ctrl-C (StopSignal) lets the current step finish; the run then checkpoints and reports that it
// stopped, Interrupted turns true, and the experiment writes its summary of the finished runs (marked partial).
// `--resume` skips the finished runs, continues the interrupted one from its checkpoint and gives bit-identical
// results (timings aside) to an uninterrupted run. Without an output folder nothing is written, but Ctrl-C still
// stops after the current step.
using System.Text.Json;
using WhaleTech.IO;
using WhaleTech.Runtime;
using WhaleTech.Training;
using static TorchSharp.torch;

namespace WhaleTech.Lab.Runs;

public sealed class ExperimentRuns
{
    public const string RunsDir = "runs", PrefixRunsSuffix = ".runs", ExperimentFile = "experiment.json", ResultFile = "result.json", CheckpointDir = "checkpoint";

    internal static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    readonly Dictionary<string, string> _names = [];

    /// <summary>The folder of the runs, or null: no files, only the Ctrl-C behaviour.</summary>
    public string? RunsPath { get; }
    /// <summary>Checkpoint a training run every this many optimizer steps (0: only on Ctrl-C).</summary>
    public int CheckpointEvery { get; }
    public bool Resume { get; }
    public StopSignal? Stop { get; }
    /// <summary>True once a run stopped on Ctrl-C, or the experiment did before starting its next run.</summary>
    public bool Interrupted { get; private set; }
    /// <summary>Finished runs read back from their result records (resume).</summary>
    public int Reused { get; private set; }

    /// <summary>Checks the settings before any work: CheckpointEvery ≥ 0; a resume needs <paramref name="runsDir"/> to hold an
    /// earlier run of an experiment (experiment.json). <paramref name="runsDir"/> null: nothing is written.</summary>
    public ExperimentRuns(string? runsDir, int checkpointEvery = 50, bool resume = false, StopSignal? stop = null)
    {
        Guard.NonNegative("--checkpoint-every", checkpointEvery);
        if (resume && runsDir is null) throw new WhaleArgumentException("--resume", "true", "needs --out, the output of the interrupted run");
        if (resume && !File.Exists(Path.Combine(runsDir!, ExperimentFile)))
            throw new WhaleArgumentException("--resume", runsDir, $"needs {Path.Combine(runsDir!, ExperimentFile)}, written by an earlier run with this --out");
        (RunsPath, CheckpointEvery, Resume, Stop) = (runsDir, checkpointEvery, resume, stop);
    }

    /// <summary>The runs folder of an experiment whose --out is <paramref name="output"/>: &lt;out&gt;/runs for a folder,
    /// &lt;out&gt;.runs for a file prefix; null without an output.</summary>
    public static string? RunsFolderOf(string? output, bool prefix = false)
        => output is null ? null : prefix ? output + PrefixRunsSuffix : Path.Combine(output, RunsDir);

    /// <summary>Records what the experiment is: a fresh start clears runs/ and writes <paramref name="options"/> (as JSON)
    /// with <paramref name="kind"/>; a resume must be given the same, or it is refused before any work.</summary>
    public void Begin(string kind, object options)
    {
        if (RunsPath is null) return;
        var json = JsonSerializer.Serialize(new { kind, options }, Json);
        var path = Path.Combine(RunsPath, ExperimentFile);
        if (Resume)
        {
            if (File.ReadAllText(path) != json)
                throw new WhaleArgumentException("--resume", RunsPath, $"must be given the same experiment and options as the interrupted run (stored in {path})");
            return;
        }
        if (Directory.Exists(RunsPath))
        {
            // Only an earlier experiment's runs are cleared; a folder of that name holding anything else is left alone.
            if (!File.Exists(path) && Directory.EnumerateFileSystemEntries(RunsPath).Any())
                throw new WhaleArgumentException("--out", RunsPath, "must not hold a non-empty runs folder that is not an experiment's (no experiment.json): choose another --out");
            Directory.Delete(RunsPath, true);
        }
        Directory.CreateDirectory(RunsPath);
        AtomicFile.WriteAllText(path, json);
    }

    /// <summary>True once a stop was asked for (Ctrl-C): call it before starting the next run; it marks the experiment interrupted.</summary>
    public bool StopRequested
    {
        get
        {
            if (Stop?.Requested == true) Interrupted = true;
            return Interrupted;
        }
    }

    /// <summary>The run named <paramref name="name"/> (e.g. "mla seed 0"): its folder is runs/&lt;slug of the name&gt;.
    /// <paramref name="resumable"/> false: the loop's state cannot be checkpointed, so an interrupted run restarts on resume.</summary>
    public ExperimentRun Open(string name, bool resumable = true)
    {
        string? dir = null;
        if (RunsPath is not null)
        {
            var slug = Slug(name);
            if (_names.TryGetValue(slug, out var other) && other != name)
                throw new WhaleArgumentException("run", name, $"must not share its folder name {slug} with run {other}");
            _names[slug] = name;
            dir = Path.Combine(RunsPath, slug);
        }
        return new ExperimentRun(this, name, dir, resumable);
    }

    internal void MarkInterrupted() => Interrupted = true;
    internal void MarkReused() => Reused++;

    /// <summary>"none seed 0" → "none-seed-0": lower-case ASCII letters and digits, other characters runs of '-'.</summary>
    public static string Slug(string name)
    {
        var sb = new System.Text.StringBuilder();
        foreach (char c in name.ToLowerInvariant())
            if (char.IsAsciiLetterOrDigit(c)) sb.Append(c);
            else if (sb.Length > 0 && sb[^1] != '-') sb.Append('-');
        var s = sb.ToString().Trim('-');
        return s.Length == 0 ? "run" : s;
    }
}

/// <summary>One training run of an experiment: its folder, metrics log, checkpoints and result record.</summary>
public sealed class ExperimentRun : IDisposable
{
    readonly ExperimentRuns _runs;
    MetricsLog? _log;

    public string Name { get; }
    /// <summary>runs/&lt;run&gt;, or null without an output folder.</summary>
    public string? Dir { get; }
    public bool Resumable { get; }
    string? CheckpointPath => Dir is null ? null : Path.Combine(Dir, ExperimentRuns.CheckpointDir);

    internal ExperimentRun(ExperimentRuns runs, string name, string? dir, bool resumable) => (_runs, Name, Dir, Resumable) = (runs, name, dir, resumable);

    /// <summary>The result record of a finished run (a resume reads it instead of training again), or null.</summary>
    public T? Finished<T>() where T : class
    {
        if (Dir is null || !File.Exists(Path.Combine(Dir, ExperimentRuns.ResultFile))) return null;
        var path = Path.Combine(Dir, ExperimentRuns.ResultFile);
        try
        {
            var r = JsonSerializer.Deserialize<T>(File.ReadAllText(path), ExperimentRuns.Json) ?? throw new JsonException("null");
            _runs.MarkReused();
            return r;
        }
        catch (JsonException e) { throw new WhaleFormatException(path, "not a result record of this experiment: " + e.Message, e); }
    }

    /// <summary>Starts training: restores <paramref name="model"/> (built exactly as for a fresh run) and
    /// <paramref name="optimizer"/> from the run's checkpoint when there is one and returns its step, data position
    /// and loop state (null: a fresh start); opens the metrics log (kept up to the checkpoint's step, else new).</summary>
    public RunCheckpointState? Start(nn.Module model, AdamWOptimizer optimizer)
    {
        if (Dir is null) return null;
        RunCheckpointState? state = Resumable && RunCheckpoint.Exists(CheckpointPath!) ? RunCheckpoint.Load(CheckpointPath!, model, optimizer) : null;
        _log?.Dispose();
        _log = new MetricsLog(Dir, resumeFromStep: state?.Step);
        return state;
    }

    /// <summary>One step's scalars into metrics.jsonl and TensorBoard.</summary>
    public void Log(int step, IReadOnlyDictionary<string, double> scalars) => _log?.Write(step, scalars);

    /// <summary>After optimizer step <paramref name="step"/> of <paramref name="steps"/>: writes the checkpoint every
    /// CheckpointEvery steps, and when Ctrl-C asked to stop writes it too and returns true — the caller then returns
    /// without a result. <paramref name="state"/> gives the loop's own state (JSON-serializable) when a checkpoint is written.</summary>
    public bool AfterStep(int step, int steps, nn.Module model, AdamWOptimizer optimizer, long dataPosition, Func<object?>? state = null)
    {
        if (step >= steps) return false;                                    // the run is complete: finish it
        bool stop = _runs.Stop?.Requested == true;
        if ((stop || (_runs.CheckpointEvery > 0 && step % _runs.CheckpointEvery == 0)) && Resumable && CheckpointPath is not null)
            RunCheckpoint.Save(CheckpointPath, model, optimizer, step, dataPosition, state?.Invoke());
        if (stop) _runs.MarkInterrupted();
        return stop;
    }

    /// <summary>Writes the finished run's result record atomically, then drops its checkpoint.</summary>
    public void Finish<T>(T result)
    {
        _log?.Dispose();
        _log = null;
        if (Dir is null) return;
        AtomicFile.WriteAllText(Path.Combine(Dir, ExperimentRuns.ResultFile), JsonSerializer.Serialize(result, ExperimentRuns.Json));
        AtomicFolder.Delete(CheckpointPath!);
    }

    public void Dispose() => _log?.Dispose();
}
