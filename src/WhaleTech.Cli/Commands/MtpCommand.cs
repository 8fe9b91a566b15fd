// `whale mtp`: multi-token prediction (DeepSeek-V3 §2.2) and MTP speculative decoding (§5.4.3).
//   whale mtp train      trains a small LM with D MTP modules (loss = L_main + λ/D Σ_k L_MTP^k), prints the held-out
//                        main and per-depth MTP losses, and saves it (+ train-results.json)
//   whale mtp speculate  decodes prompts with plain decoding and with the MTP modules as the draft (greedy or
//                        speculative sampling, batch ≥ 1): acceptance rate, tokens per main forward, tokens/s of
//                        both, the speed-up, and (greedy) whether the tokens are identical
using System.CommandLine;
using System.Text.Json;
using Spectre.Console;
using TorchSharp;
using WhaleTech.Lab.Bench;
using WhaleTech.Hub;
using WhaleTech.IO;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Training;
using WhaleTech.Core;
using WhaleTech.Lab.Mtp;

namespace WhaleTech.Cli.Commands;

public static class MtpCommand
{
    public static Command Build() => new("mtp", "Multi-token prediction (DeepSeek-V3 §2.2): train with MTP modules, then speculative decoding with them as the draft.")
    {
        BuildTrain(), BuildSpeculate(),
    };

    static Command BuildTrain()
    {
        var d = new MtpExperimentOptions();
        var device = Cli.DeviceOption();
        var shape = new ModelShapeOptions(d.Attention, d.Model.Hidden, d.Model.Layers, d.Model.Heads, layersDescription: "num_hidden_layers of the main model.");
        var depth = new Option<int>("--depth") { Description = "D = num_nextn_predict_layers: MTP modules (DeepSeek-V3 uses 1).", DefaultValueFactory = _ => d.Depth };
        var weight = new Option<double>("--mtp-weight") { Description = "λ of the MTP loss (V3: 0.3, later 0.1; 0 = off).", DefaultValueFactory = _ => d.MtpWeight };
        var loop = new TrainingLoopOptions(d.Loop.Steps, d.Loop.BatchSize, d.SequenceLength, d.Loop.LearningRate, d.Seed);
        var run = new RunFolderOptions("runs/mtp-lm", "config.json + model.safetensors (Hub layout, MTP layers included)", "pass the options the run was started with");
        var cmd = new Command("train", "Train a small character-level LM with MTP modules on the synthetic corpus (a few minutes on a CPU) and save it.") { device };
        foreach (var o in shape.All.Append(depth).Append(weight).Concat(loop.All).Concat(run.All)) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            var o = new MtpExperimentOptions
            {
                Attention = parse.GetValue(shape.Attention)!, Model = shape.Shape(parse),
                Depth = parse.GetValue(depth), MtpWeight = parse.GetValue(weight), Loop = loop.Loop(parse, d.Loop),
                SequenceLength = parse.GetValue(loop.SeqLen), Seed = parse.GetValue(loop.Seed),
            }.Validate();
            o.TrainOptions().Validate();
            o.ModelConfig(new CharTokenizer().VocabSize).Validate();
            AnsiConsole.MarkupLine($"Training a {o.Attention.ToUpperInvariant()} LM ({o.Model.Layers} layers, hidden {o.Model.Hidden}) with D = {o.Depth} MTP module(s), λ = {o.MtpWeight}, on {dev.type} for {o.Loop.Steps} steps.");
            DeepSeekLM model = null!;
            List<StepMetrics> history = [];
            bool interrupted = false;
            var folder = run.Folder(parse);
            var dir = folder.OutDir;
            using var stop = StopSignal.Listen();
            AnsiConsole.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(p =>
                {
                    var task = p.AddTask("training", maxValue: o.Loop.Steps);
                    (model, history, interrupted) = MtpExperiment.Train(o, dev, folder, stop, m =>
                    {
                        task.Value = m.Step;
                        task.Description = $"loss {m.Loss:F3} mtp {string.Join("/", (m.MtpLosses ?? []).Select(l => l.ToString("F3")))}" + (m.EvalLoss is { } e ? $" eval {e:F3}" : "");
                    });
                });
            using var _ = model;
            if (interrupted)
            {
                AnsiConsole.MarkupLine($"Interrupted: checkpoint in [bold]{Markup.Escape(folder.CheckpointDir)}[/]. Continue with the same options and --resume.");
                return StopSignal.ExitCode;
            }
            var table = new Table().AddColumn("step").AddColumn("train loss").AddColumn("MTP loss per depth").AddColumn("eval loss");
            foreach (var m in history.Where(h => h.EvalLoss is not null))
                table.AddRow(m.Step.ToString(), $"{m.Loss:F3}", string.Join(" / ", (m.MtpLosses ?? []).Select(l => l.ToString("F3"))), $"{m.EvalLoss:F3}");
            AnsiConsole.Write(table);
            var heldOut = MtpExperiment.EvaluateHeldOut(model, o, dev);
            AnsiConsole.MarkupLine(Markup.Escape(heldOut.ToString()) + $" (nats/char, {heldOut.Batches} held-out batches)");
            StateDict.SavePretrained(model, model.Config.ToJson(), dir);
            var last = history.Count > 0 ? history[^1] : throw new WhaleException("the checkpoint had already run all steps: nothing to train (remove --resume, or raise --steps with a fresh --out)");
            AtomicFile.WriteAllText(Path.Combine(dir, "train-results.json"), JsonSerializer.Serialize(new
            {
                options = o,
                final_train_loss = last.Loss,
                final_train_mtp_losses = last.MtpLosses,
                eval = new { main = heldOut.Main, mtp_depths = heldOut.Depths, batches = heldOut.Batches, tokens_per_batch = heldOut.TokensPerBatch },
                history = history.Where(h => h.EvalLoss is not null).Select(h => new { step = h.Step, loss = h.Loss, mtp_losses = h.MtpLosses, eval_loss = h.EvalLoss }),
                machine = MachineInfo.Collect(dev),
            }, new JsonSerializerOptions { WriteIndented = true }));
            AnsiConsole.MarkupLine($"Saved [bold]{Markup.Escape(dir)}[/]. Next: whale mtp speculate --model {Markup.Escape(dir)}");
            return 0;
        });
        return cmd;
    }

    static Command BuildSpeculate()
    {
        var device = Cli.DeviceOption();
        var model = new Option<string>("--model") { Description = "Folder with config.json + model.safetensors (from `whale mtp train`).", DefaultValueFactory = _ => "runs/mtp-lm" };
        var prompts = new Option<string[]>("--prompt") { Description = "Prompt text; repeat for several prompts (decoded --batch-size at a time; the list is cycled to fill the last batch).", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => MtpExperiment.DefaultPrompts.ToArray() };
        var newTokens = new Option<int>("--new-tokens") { Description = "Tokens to generate per prompt (no stop token: both decoders do the same work).", DefaultValueFactory = _ => 64 };
        var batchSize = new Option<int>("--batch-size") { Description = "Prompts decoded together (left-padded); a round keeps the batch's minimum accepted drafts.", DefaultValueFactory = _ => 1 };
        var temperature = new Option<double>("--temperature") { Description = "0 = greedy (tokens must equal plain greedy's); > 0 = speculative sampling (exactly the target's distribution).", DefaultValueFactory = _ => 0 };
        var topK = new Option<int>("--top-k") { Description = "Top-k for sampling (0 = off); the draft uses the same transform.", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { Description = "Top-p / nucleus for sampling (1 = off), in (0, 1].", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<int>("--seed") { Description = "Seed of the sampling generator (each run of each decoder starts from it).", DefaultValueFactory = _ => 1 };
        var reps = new Option<int>("--repetitions") { Description = "Timed runs per batch and decoder (the median is reported).", DefaultValueFactory = _ => 7 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed runs first.", DefaultValueFactory = _ => 2 };
        var outDir = new Option<string?>("--out") { Description = "Also write the result as <name>.json/.md/.png (with the machine's description) into this folder." };
        var name = new Option<string?>("--name") { Description = "Result name for --out: letters, digits, '-' or '_' (default mtp-speculate-<layers>l, plus -b<batch> and -t<temperature, '.' as 'p'> when not 1 / greedy)." };
        var cmd = new Command("speculate", "Plain vs MTP speculative decoding of a saved model (greedy or sampled, batched): acceptance rate, tokens per main forward, speed-up, identical tokens (greedy).")
        { device, model, prompts, newTokens, batchSize, temperature, topK, topP, seed, reps, warmup, outDir, name };
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            var settings = new DecodeSettings
            {
                BatchSize = Guard.Positive("--batch-size", parse.GetValue(batchSize)), Temperature = Guard.NonNegative("--temperature", parse.GetValue(temperature)),
                TopK = (int)Guard.NonNegative("--top-k", parse.GetValue(topK)), TopP = parse.GetValue(topP), Seed = parse.GetValue(seed),
            };
            if (!(settings.TopP > 0 && settings.TopP <= 1)) throw new WhaleArgumentException("--top-p", settings.TopP, "must be in (0, 1]");
            int n = Guard.Positive("--new-tokens", parse.GetValue(newTokens));
            if (parse.GetValue(name) is { } given && (given.Length == 0 || !given.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_')))
                throw new WhaleArgumentException("--name", given, "must be a non-empty name of letters, digits, '-' or '_' (it names the result files)");
            var dir = parse.GetValue(model)!;
            if (!File.Exists(Path.Combine(dir, "config.json")))
                throw new WhaleArgumentException("--model", dir, "must be a folder with config.json and model.safetensors (train one with `whale mtp train`)");
            var cfg = ModelConfig.Load(Path.Combine(dir, "config.json"));
            if (cfg.NumNextnPredictLayers < 1) throw new WhaleArgumentException("--model", dir, "must have num_nextn_predict_layers ≥ 1 (train one with `whale mtp train`)");
            var tok = new CharTokenizer();
            if (tok.VocabSize != cfg.VocabSize)
                throw new WhaleArgumentException("--model", dir, $"must be a character-level WhaleTech model (vocab_size {tok.VocabSize}); this one has {cfg.VocabSize}");
            using var lm = new DeepSeekLM(cfg);
            StateDict.Load(lm, CheckpointReader.Open(dir));
            lm.to(dev);
            var texts = parse.GetValue(prompts)!;
            foreach (var t in texts) if (!tok.CanEncode(t.ToLowerInvariant())) throw new WhaleArgumentException("--prompt", t, "must use the tokenizer's characters (a-z, 0-9, space, + - * / = ( ) < > . , ; : ? ! ')");
            string mode = settings.Greedy ? "greedy" : $"sampling (temperature {settings.Temperature}, top-k {settings.TopK}, top-p {settings.TopP}, seed {settings.Seed})";
            AnsiConsole.MarkupLine($"Decoding {texts.Length} prompt(s) × {n} tokens on {dev.type}, batch {settings.BatchSize}, {Markup.Escape(mode)}: plain vs MTP speculative (D = {cfg.NumNextnPredictLayers}).");
            var s = MtpExperiment.MeasureDecode(lm, texts, n, dev, (int)Guard.NonNegative("--warmup", parse.GetValue(warmup)), Guard.Positive("--repetitions", parse.GetValue(reps)), settings);
            var table = new Table().AddColumn("prompt(s)").AddColumn("plain ms").AddColumn("speculative ms").AddColumn("acceptance").AddColumn("kept").AddColumn("tokens/forward")
                .AddColumn(settings.Greedy ? "same tokens" : "same tokens (n/a: sampled)").AddColumn("completion (row 1)");
            foreach (var r in s.Prompts)
                table.AddRow(Markup.Escape(r.Prompt), $"{r.PlainMs:F1}", $"{r.SpeculativeMs:F1}", $"{r.AcceptanceRate:P0}", $"{r.KeptRate:P0}", $"{r.TokensPerForward:F2}",
                             settings.Greedy ? (r.SameTokens ? "yes" : "[red]NO[/]") : "-", Markup.Escape(r.Completion.Replace("\n", "⏎")));
            AnsiConsole.Write(table);
            string identical = settings.Greedy ? (s.AllSame ? "yes" : "[red]NO[/]") : "n/a (sampling: same distribution, different random draws)";
            AnsiConsole.MarkupLine($"acceptance {s.AcceptanceRate:P1} (kept after the batch minimum {s.KeptRate:P1}), {s.TokensPerForward:F2} tokens per main forward; " +
                                   $"plain {s.PlainTokensPerSecond:F0} tokens/s, speculative {s.SpeculativeTokensPerSecond:F0} tokens/s: [bold]speed-up {s.SpeedUp:F2}×[/]; identical tokens: {identical}");
            if (parse.GetValue(outDir) is { } folder)
            {
                var resultName = parse.GetValue(name) ?? $"mtp-speculate-{cfg.NumHiddenLayers}l" + (settings.BatchSize > 1 ? $"-b{settings.BatchSize}" : "")
                                 + (settings.Greedy ? "" : $"-t{settings.Temperature.ToString(System.Globalization.CultureInfo.InvariantCulture).Replace('.', 'p')}");
                var result = new BenchmarkResult(resultName, $"MTP speculative vs plain decoding (batch {settings.BatchSize}, {mode}) of " + dir,
                                                       MachineInfo.Collect(dev)) { Plot = new PlotSpec("tokens_per_s", "layers") };
                result.With("device", dev.ToString()).With("new_tokens", n).With("repetitions", parse.GetValue(reps)).With("warmup", parse.GetValue(warmup))
                      .With("batch", settings.BatchSize).With("temperature", settings.Temperature).With("top_k", settings.TopK).With("top_p", settings.TopP)
                      .With("seed", settings.Seed).With("torch_threads", TorchSharp.torch.get_num_threads());
                result.Command = "whale " + string.Join(" ", parse.Tokens.Select(t => t.Value.Contains(' ') ? $"\"{t.Value}\"" : t.Value));
                MtpExperiment.AddTo(result, s, cfg);
                var files = ResultWriter.Write(result, folder);
                AnsiConsole.MarkupLine($"wrote {Markup.Escape(files.Json)}");
            }
            return !settings.Greedy || s.AllSame ? 0 : 1;
        });
        return cmd;
    }
}
