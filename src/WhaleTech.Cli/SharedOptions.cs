// Option declarations several commands share, declared once: the shape of a small LM (--attention, --hidden,
// --layers, --heads), its training loop (--steps, --batch, --seq-len, --lr, --seed) and its run folder (--out,
// --checkpoint-every, --resume). Each command passes its own defaults; the rules (ranges, choices) come from
// Validation/Rules.cs by option name, so every command that declares these gets the same checks and help.
using System.CommandLine;
using WhaleTech.Core;

namespace WhaleTech.Cli;

/// <summary>--attention --hidden --layers --heads.</summary>
public sealed class ModelShapeOptions
{
    public Option<string> Attention { get; }
    public Option<int> Hidden { get; }
    public Option<int> Layers { get; }
    public Option<int> Heads { get; }

    public ModelShapeOptions(string attention = "mla", int hidden = 64, int layers = 2, int heads = 4, string layersDescription = "num_hidden_layers.")
    {
        Attention = new Option<string>("--attention") { Description = "Attention variant: " + string.Join(", ", AttentionVariants.Names) + ".", DefaultValueFactory = _ => attention };
        Hidden = new Option<int>("--hidden") { Description = "hidden_size.", DefaultValueFactory = _ => hidden };
        Layers = new Option<int>("--layers") { Description = layersDescription, DefaultValueFactory = _ => layers };
        Heads = new Option<int>("--heads") { Description = "num_attention_heads.", DefaultValueFactory = _ => heads };
    }

    public IEnumerable<Option> All => [Attention, Hidden, Layers, Heads];

    /// <summary>The parsed --hidden --layers --heads.</summary>
    public ModelShape Shape(ParseResult p) => new() { Hidden = p.GetValue(Hidden), Layers = p.GetValue(Layers), Heads = p.GetValue(Heads) };

    /// <summary>ModelConfig.Tiny of the parsed values for a tokenizer of <paramref name="vocab"/> tokens.</summary>
    public ModelConfig Tiny(ParseResult p, int vocab)
        => Shape(p).Tiny(p.GetValue(Attention)!, vocab);
}

/// <summary>--steps --batch --seq-len --lr --seed.</summary>
public sealed class TrainingLoopOptions
{
    public Option<int> Steps { get; }
    public Option<int> Batch { get; }
    public Option<int> SeqLen { get; }
    public Option<double> Lr { get; }
    public Option<int> Seed { get; }

    public TrainingLoopOptions(int steps, int batch, int seqLen, double lr, int seed = 1)
    {
        Steps = new Option<int>("--steps") { Description = "Optimizer steps.", DefaultValueFactory = _ => steps };
        Batch = new Option<int>("--batch") { Description = "Sequences per step.", DefaultValueFactory = _ => batch };
        SeqLen = new Option<int>("--seq-len") { Description = "Characters per sequence.", DefaultValueFactory = _ => seqLen };
        Lr = new Option<double>("--lr") { Description = "Peak learning rate (warm-up 10%, cosine to lr/10).", DefaultValueFactory = _ => lr };
        Seed = new Option<int>("--seed") { Description = "Random seed (weights and data).", DefaultValueFactory = _ => seed };
    }

    public IEnumerable<Option> All => [Steps, Batch, SeqLen, Lr, Seed];

    /// <summary><paramref name="initial"/> with the parsed --steps --batch --lr (its weight decay and clipping kept).</summary>
    public Training.TrainingLoop Loop(ParseResult p, Training.TrainingLoop initial)
        => initial with { Steps = p.GetValue(Steps), BatchSize = p.GetValue(Batch), LearningRate = p.GetValue(Lr) };
}

/// <summary>--out --checkpoint-every --resume of a training run folder (Training/LmRun.cs) or of an experiment's runs (Lab/Runs/ExperimentRuns.cs).</summary>
public sealed class RunFolderOptions
{
    public Option<string> Out { get; }
    public Option<int> CheckpointEvery { get; }
    public Option<bool> Resume { get; }

    public RunFolderOptions(string defaultOut, string contents, string resumeNote)
    {
        Out = new Option<string>("--out") { Description = $"Folder for {contents}, metrics.jsonl, tensorboard/ and checkpoint/.", DefaultValueFactory = _ => defaultOut };
        CheckpointEvery = new Option<int>("--checkpoint-every") { Description = "Write <out>/checkpoint every N steps (weights, AdamW state, step, data position); 0 = only at the end or on Ctrl-C.", DefaultValueFactory = _ => 50 };
        Resume = new Option<bool>("--resume") { Description = $"Continue from <out>/checkpoint ({resumeNote}); bit-exact with an uninterrupted run." };
    }

    readonly bool _prefix;

    RunFolderOptions(Option<string> output, Option<int> checkpointEvery, Option<bool> resume, bool prefix) => (Out, CheckpointEvery, Resume, _prefix) = (output, checkpointEvery, resume, prefix);

    /// <summary>The options of an experiment that trains many runs (Lab/Runs/ExperimentRuns): <paramref name="contents"/>
    /// go into --out (a folder, or a file prefix when <paramref name="prefix"/>), the runs into its runs/ folder.
    /// <paramref name="defaultOut"/> null: --out is optional, and without it nothing is written (Ctrl-C still stops cleanly).</summary>
    public static RunFolderOptions ForExperiment(string? defaultOut, string contents, bool prefix = false)
    {
        string runs = prefix ? "<out>.runs/" : "<out>/runs/";
        var output = new Option<string>("--out") { Description = $"{(prefix ? "Path prefix (no extension) of" : "Folder for")} {contents}; every training run keeps {runs}<run>/ (metrics.jsonl, tensorboard/, checkpoint/ while it trains, result.json when done)." };
        if (defaultOut is not null) output.DefaultValueFactory = _ => defaultOut;
        return new RunFolderOptions(output,
            new Option<int>("--checkpoint-every") { Description = $"Checkpoint the training run every N steps into {runs}<run>/checkpoint (weights, AdamW state, step, data position); 0 = only on Ctrl-C.", DefaultValueFactory = _ => 50 },
            new Option<bool>("--resume") { Description = "Continue an interrupted experiment in --out (same options): finished runs are read back, the interrupted one continues from its checkpoint; bit-exact with an uninterrupted run." },
            prefix);
    }

    public IEnumerable<Option> All => [Out, CheckpointEvery, Resume];

    public Training.LmRunFolder Folder(ParseResult p) => new Training.LmRunFolder(p.GetValue(Out)!, p.GetValue(CheckpointEvery), p.GetValue(Resume)).Validate();

    /// <summary>The experiment's runs (in &lt;out&gt;/runs, or &lt;out&gt;.runs for a prefix), checked before any work.</summary>
    public Lab.Runs.ExperimentRuns Experiment(ParseResult p, Training.StopSignal stop)
        => new(Lab.Runs.ExperimentRuns.RunsFolderOf(p.GetValue(Out), _prefix), p.GetValue(CheckpointEvery), p.GetValue(Resume), stop);
}

/// <summary>The end of an experiment command with a run folder: after Ctrl-C, where everything is and how to go on (exit 130).</summary>
public static class ExperimentCli
{
    /// <param name="summary">Where the (partial) summary and plots were written, or null when there is no --out.</param>
    public static int Finish(Lab.Runs.ExperimentRuns runs, ParseResult parse, string? summary, TextWriter? output = null)
    {
        output ??= Console.Out;
        if (runs.Reused > 0) output.WriteLine($"{runs.Reused} finished run(s) read back from {runs.RunsPath}.");
        if (!runs.Interrupted) return 0;
        var tokens = parse.Tokens.Select(t => t.Value).ToList();
        var command = "whale " + string.Join(" ", tokens.Select(t => t.Contains(' ') ? $"\"{t}\"" : t)) + (tokens.Contains("--resume") ? "" : " --resume");
        output.WriteLine(runs.RunsPath is null
            ? "Interrupted after the current step; nothing was saved (no --out). The table above covers the finished runs only."
            : $"Interrupted after the current step: finished runs and the interrupted run's checkpoint in {runs.RunsPath}; partial summary and plots in {summary}. Continue with: {command}");
        return Training.StopSignal.ExitCode;
    }
}
