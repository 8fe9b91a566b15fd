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

/// <summary>--out --checkpoint-every --resume of a training run folder (Training/LmRun.cs).</summary>
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

    public IEnumerable<Option> All => [Out, CheckpointEvery, Resume];

    public Training.LmRunFolder Folder(ParseResult p) => new Training.LmRunFolder(p.GetValue(Out)!, p.GetValue(CheckpointEvery), p.GetValue(Resume)).Validate();
}
