// `whale train lm`: trains a small DeepSeek-style LM on the synthetic corpus (or a text file) and saves it
// as config.json + model.safetensors (Hugging Face layout).
using System.CommandLine;
using Spectre.Console;
using TorchSharp;
using WhaleTech.IO;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Training;
using WhaleTech.Core;

namespace WhaleTech.Cli.Commands;

public static class TrainCommand
{
    public static Command Build()
    {
        var device = Cli.DeviceOption();
        var shape = new ModelShapeOptions(hidden: 64, layers: 2, heads: 4);
        var loop = new TrainingLoopOptions(steps: 300, batch: 16, seqLen: 64, lr: 5e-3);
        var text = new Option<string?>("--text") { Description = "Train on this text file instead of the synthetic corpus (characters outside the tokenizer's alphabet are an error)." };
        var moments = new Option<string>("--optimizer-moments") { Description = "AdamW moment storage: fp32, or bf16 as in DeepSeek-V3 §3.3 (half the optimizer memory).", DefaultValueFactory = _ => "fp32" };
        var run = new RunFolderOptions("runs/tiny-lm", "config.json + model.safetensors", "its stored configuration and options win");
        var lm = new Command("lm", "Train a small DeepSeek-style language model on the CPU in about a minute and save it.") { device };
        foreach (var o in shape.All.Concat(loop.All).Append(text).Append(moments).Concat(run.All)) lm.Options.Add(o);
        lm.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            var momentPrecision = MomentPrecisions.Parse("--optimizer-moments", parse.GetValue(moments));
            int s = parse.GetValue(loop.Seed);
            var tok = new CharTokenizer();
            var folder = run.Folder(parse);
            var dir = folder.OutDir;
            int n = parse.GetValue(loop.Steps);
            var (cfg, opts) = folder.Resolve(
                shape.Tiny(parse, tok.VocabSize),
                new TrainOptions
                {
                    Steps = n, BatchSize = parse.GetValue(loop.Batch), SequenceLength = parse.GetValue(loop.SeqLen), LearningRate = parse.GetValue(loop.Lr),
                    MinLearningRate = parse.GetValue(loop.Lr) / 10, WarmupSteps = Math.Max(1, n / 10), EvalEvery = Math.Max(1, n / 5), Seed = s,
                    OptimizerMoments = momentPrecision,
                });
            s = opts.Seed;                                                    // a resumed run keeps its seed
            torch.manual_seed(s);
            string trainText, evalText;
            if (parse.GetValue(text) is { } path)
            {
                var all = File.ReadAllText(Guard.ExistingFile("--text", path)).ToLowerInvariant();
                int split = (int)(all.Length * 0.9);
                (trainText, evalText) = (all[..split], all[split..]);
            }
            else (trainText, evalText) = (new SyntheticCorpus(60000, s).Text, new SyntheticCorpus(8000, s + 1000).Text);
            using var model = new DeepSeekLM(cfg);
            model.to(dev);
            var trainer = new LmTrainer(model, opts);
            var trainStream = new TokenWindowStream(tok.Encode(trainText), opts.BatchSize, opts.SequenceLength, s);
            var evalStream = new TokenWindowStream(tok.Encode(evalText), opts.BatchSize, opts.SequenceLength, s + 1);
            n = opts.Steps;
            AnsiConsole.MarkupLine((folder.Resume ? $"Resuming {Markup.Escape(folder.CheckpointDir)}: " : "") +
                $"training a {model.ParameterCount():N0}-parameter {cfg.Attention.ToUpperInvariant()} model on {dev.type} for {n} steps " +
                $"(AdamW moments {opts.OptimizerMoments.Name()}: {trainer.Optimizer.StateBytes / 1024.0:N0} KiB of optimizer state).");
            List<StepMetrics> history = [];
            bool interrupted = false;
            using var stop = StopSignal.Listen();
            AnsiConsole.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(p =>
                {
                    var task = p.AddTask("training", maxValue: n);
                    (history, interrupted) = LmRun.Run(model, trainer, trainStream, evalStream, dev, folder, stop, m =>
                    {
                        task.Value = m.Step;
                        task.Description = $"loss {m.Loss:F3}" + (m.EvalLoss is { } e ? $" eval {e:F3}" : "");
                    });
                });
            var table = new Table().AddColumn("step").AddColumn("train loss").AddColumn("eval loss");
            foreach (var m in history.Where(h => h.EvalLoss is not null)) table.AddRow(m.Step.ToString(), $"{m.Loss:F3}", $"{m.EvalLoss:F3}");
            AnsiConsole.Write(table);
            if (interrupted)
            {
                AnsiConsole.MarkupLine($"Interrupted at step {trainer.Step} of {n}: checkpoint in [bold]{Markup.Escape(folder.CheckpointDir)}[/], metrics in {Markup.Escape(Path.Combine(dir, MetricsLog.JsonlFile))}. " +
                                       $"Continue with: whale train lm --out {Markup.Escape(dir)} --resume");
                return StopSignal.ExitCode;
            }
            StateDict.SavePretrained(model, cfg.ToJson(), dir);
            AnsiConsole.MarkupLine($"Saved [bold]{Markup.Escape(dir)}[/] (config.json + model.safetensors). Try: whale generate --model {Markup.Escape(dir)} --prompt \"17+25=\"");
            return 0;
        });
        var cmd = new Command("train", "Train models.") { lm };
        return cmd;
    }
}
