// A language-model training run with a run folder, shared by `whale train lm` and `whale mtp train`:
//   <out>/metrics.jsonl + <out>/tensorboard/   every step's loss, learning rate, gradient norm, eval loss
//   <out>/checkpoint/                          weights, AdamW state, step, data position (every N steps, at the
//                                              end, and when Ctrl-C stops the run after its current step)
// Resuming reads the checkpoint's config and options (they win over the command line), restores weights,
// optimizer, step and the training stream's position, and continues bit-exactly.
using WhaleTech.Core;
using WhaleTech.Model;
using static TorchSharp.torch;

namespace WhaleTech.Training;

/// <summary>Where a run keeps its files, how often it checkpoints, whether it resumes.</summary>
public sealed record LmRunFolder(string OutDir, int CheckpointEvery = 50, bool Resume = false)
{
    public string CheckpointDir => Path.Combine(OutDir, "checkpoint");

    /// <summary>The folder a resume reads (the checkpoint, or its ".old" twin when a run was killed mid-swap).</summary>
    string ExistingCheckpoint => Directory.Exists(CheckpointDir) ? CheckpointDir : CheckpointDir + ".old";

    /// <summary>Checks the folder before any work: a resume needs a checkpoint; CheckpointEvery ≥ 0.</summary>
    public LmRunFolder Validate()
    {
        Runtime.Guard.NonNegative("checkpoint_every", CheckpointEvery);
        if (Resume && !Directory.Exists(ExistingCheckpoint))
            throw new Runtime.WhaleArgumentException("resume", CheckpointDir, $"needs a checkpoint folder written by an earlier run with this output folder ({OutDir})");
        return this;
    }

    /// <summary>The model config and trainer options to use: the checkpoint's when resuming, else the given ones.</summary>
    public (ModelConfig Config, TrainOptions Options) Resolve(ModelConfig config, TrainOptions options)
        => Resume ? (ModelConfig.Load(Path.Combine(ExistingCheckpoint, "config.json")), TrainingCheckpoint.ReadState(ExistingCheckpoint).Options) : (config, options);
}

public static class LmRun
{
    /// <summary>Runs <paramref name="trainer"/> to its last step or until <paramref name="stop"/>; restores the checkpoint
    /// first when the folder says Resume. Returns the steps run now and whether the run was interrupted.</summary>
    public static (List<StepMetrics> History, bool Interrupted) Run(DeepSeekLM model, LmTrainer trainer, TokenWindowStream train,
        TokenWindowStream eval, Device device, LmRunFolder folder, StopSignal? stop = null, Action<StepMetrics>? onStep = null)
    {
        folder.Validate();
        if (folder.Resume) TrainingCheckpoint.Load(folder.CheckpointDir, model, trainer, train);
        int n = trainer.Options.Steps;
        List<StepMetrics> history;
        using (var log = new MetricsLog(folder.OutDir, resumeFromStep: folder.Resume ? trainer.Step : null))
        {
            history = trainer.Run(train, eval, device, m =>
            {
                var scalars = new Dictionary<string, double> { ["loss"] = m.Loss, ["learning_rate"] = m.LearningRate, ["grad_norm"] = m.GradNorm, ["skipped"] = m.Skipped ? 1 : 0 };
                if (m.EvalLoss is { } ev) scalars["eval/loss"] = ev;
                for (int k = 0; k < (m.MtpLosses?.Length ?? 0); k++) scalars[$"mtp/loss_depth{k + 1}"] = m.MtpLosses![k];
                log.Write(m.Step, scalars);
                if (folder.CheckpointEvery > 0 && m.Step % folder.CheckpointEvery == 0 && m.Step < n)
                    TrainingCheckpoint.Save(folder.CheckpointDir, model, trainer, train);
                onStep?.Invoke(m);
            }, stop);
        }
        TrainingCheckpoint.Save(folder.CheckpointDir, model, trainer, train);
        return (history, trainer.Step < n);
    }
}
