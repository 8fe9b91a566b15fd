// `whale mtp`: multi-token prediction (DeepSeek-V3 §2.2) and MTP speculative decoding (§5.4.3).
//   whale mtp train      trains a small LM with D MTP modules (loss = L_main + λ/D Σ_k L_MTP^k) and saves it
//   whale mtp speculate  decodes prompts with plain greedy decoding and with the MTP modules as the draft:
//                        acceptance rate, tokens per main forward, tokens/s of both and the speed-up
using System.CommandLine;
using Spectre.Console;
using TorchSharp;
using WhaleTech.IO;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Training;

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
        var attention = new Option<string>("--attention") { Description = "Attention kind: mla, mha, gqa or mqa.", DefaultValueFactory = _ => d.Attention };
        var hidden = new Option<int>("--hidden") { Description = "hidden_size.", DefaultValueFactory = _ => d.Hidden };
        var layers = new Option<int>("--layers") { Description = "num_hidden_layers of the main model.", DefaultValueFactory = _ => d.Layers };
        var heads = new Option<int>("--heads") { Description = "num_attention_heads.", DefaultValueFactory = _ => d.Heads };
        var depth = new Option<int>("--depth") { Description = "D = num_nextn_predict_layers: MTP modules (DeepSeek-V3 uses 1).", DefaultValueFactory = _ => d.Depth };
        var weight = new Option<double>("--mtp-weight") { Description = "λ of the MTP loss (V3: 0.3, later 0.1; 0 = off).", DefaultValueFactory = _ => d.MtpWeight };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps.", DefaultValueFactory = _ => d.Steps };
        var batch = new Option<int>("--batch") { Description = "Sequences per step.", DefaultValueFactory = _ => d.BatchSize };
        var seqLen = new Option<int>("--seq-len") { Description = "Characters per sequence.", DefaultValueFactory = _ => d.SequenceLength };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate (warm-up 10%, cosine to lr/10).", DefaultValueFactory = _ => d.LearningRate };
        var seed = new Option<int>("--seed") { Description = "Random seed (weights and data).", DefaultValueFactory = _ => d.Seed };
        var outDir = new Option<string>("--out") { Description = "Folder for config.json + model.safetensors (Hub layout, MTP layers included).", DefaultValueFactory = _ => "runs/mtp-lm" };
        var cmd = new Command("train", "Train a small character-level LM with MTP modules on the synthetic corpus (a few minutes on a CPU) and save it.")
        { device, attention, hidden, layers, heads, depth, weight, steps, batch, seqLen, lr, seed, outDir };
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            var o = new MtpExperimentOptions
            {
                Attention = parse.GetValue(attention)!, Hidden = parse.GetValue(hidden), Layers = parse.GetValue(layers), Heads = parse.GetValue(heads),
                Depth = parse.GetValue(depth), MtpWeight = parse.GetValue(weight), Steps = parse.GetValue(steps), BatchSize = parse.GetValue(batch),
                SequenceLength = parse.GetValue(seqLen), LearningRate = parse.GetValue(lr), Seed = parse.GetValue(seed),
            }.Validate();
            o.TrainOptions().Validate();
            o.ModelConfig(new CharTokenizer().VocabSize).Validate();
            AnsiConsole.MarkupLine($"Training a {o.Attention.ToUpperInvariant()} LM ({o.Layers} layers, hidden {o.Hidden}) with D = {o.Depth} MTP module(s), λ = {o.MtpWeight}, on {dev.type} for {o.Steps} steps.");
            DeepSeekLM model = null!;
            List<StepMetrics> history = [];
            AnsiConsole.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(p =>
                {
                    var task = p.AddTask("training", maxValue: o.Steps);
                    (model, history) = MtpExperiment.Train(o, dev, m =>
                    {
                        task.Value = m.Step;
                        task.Description = $"loss {m.Loss:F3} mtp {string.Join("/", (m.MtpLosses ?? []).Select(l => l.ToString("F3")))}" + (m.EvalLoss is { } e ? $" eval {e:F3}" : "");
                    });
                });
            using var _ = model;
            var table = new Table().AddColumn("step").AddColumn("train loss").AddColumn("MTP loss per depth").AddColumn("eval loss");
            foreach (var m in history.Where(h => h.EvalLoss is not null))
                table.AddRow(m.Step.ToString(), $"{m.Loss:F3}", string.Join(" / ", (m.MtpLosses ?? []).Select(l => l.ToString("F3"))), $"{m.EvalLoss:F3}");
            AnsiConsole.Write(table);
            var dir = parse.GetValue(outDir)!;
            StateDict.SavePretrained(model, model.Config, dir);
            AnsiConsole.MarkupLine($"Saved [bold]{Markup.Escape(dir)}[/]. Next: whale mtp speculate --model {Markup.Escape(dir)}");
            return 0;
        });
        return cmd;
    }

    static Command BuildSpeculate()
    {
        var device = Cli.DeviceOption();
        var model = new Option<string>("--model") { Description = "Folder with config.json + model.safetensors (from `whale mtp train`).", DefaultValueFactory = _ => "runs/mtp-lm" };
        var prompts = new Option<string[]>("--prompt") { Description = "Prompt text; repeat for several prompts (decoded one at a time, batch 1).", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => MtpExperiment.DefaultPrompts.ToArray() };
        var newTokens = new Option<int>("--new-tokens") { Description = "Tokens to generate per prompt (no stop token: both decoders do the same work).", DefaultValueFactory = _ => 64 };
        var reps = new Option<int>("--repetitions") { Description = "Timed runs per prompt and decoder (the median is reported).", DefaultValueFactory = _ => 7 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed runs first.", DefaultValueFactory = _ => 2 };
        var outDir = new Option<string?>("--out") { Description = "Also write the result as mtp-speculate-<layers>l.json/.md/.png (with the machine's description) into this folder." };
        var cmd = new Command("speculate", "Greedy decoding vs MTP speculative decoding of a saved model: identical tokens, acceptance rate, speed-up.")
        { device, model, prompts, newTokens, reps, warmup, outDir };
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
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
            int n = Guard.Positive("--new-tokens", parse.GetValue(newTokens));
            AnsiConsole.MarkupLine($"Decoding {texts.Length} prompt(s) × {n} tokens on {dev.type}: plain greedy vs MTP speculative (D = {cfg.NumNextnPredictLayers}).");
            var s = MtpExperiment.MeasureDecode(lm, texts, n, dev, (int)Guard.NonNegative("--warmup", parse.GetValue(warmup)), Guard.Positive("--repetitions", parse.GetValue(reps)));
            var table = new Table().AddColumn("prompt").AddColumn("plain ms").AddColumn("speculative ms").AddColumn("acceptance").AddColumn("tokens/forward").AddColumn("same tokens").AddColumn("completion");
            foreach (var r in s.Prompts)
                table.AddRow(Markup.Escape(r.Prompt), $"{r.PlainMs:F1}", $"{r.SpeculativeMs:F1}", $"{r.AcceptanceRate:P0}", $"{r.TokensPerForward:F2}", r.SameTokens ? "yes" : "[red]NO[/]",
                             Markup.Escape(r.Completion.Replace("\n", "⏎")));
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine($"acceptance {s.AcceptanceRate:P1}, {s.TokensPerForward:F2} tokens per main forward; plain {s.PlainTokensPerSecond:F0} tokens/s, speculative {s.SpeculativeTokensPerSecond:F0} tokens/s: [bold]speed-up {s.SpeedUp:F2}×[/]; identical tokens: {(s.AllSame ? "yes" : "[red]NO[/]")}");
            if (parse.GetValue(outDir) is { } folder)
            {
                var result = new Bench.BenchmarkResult($"mtp-speculate-{cfg.NumHiddenLayers}l", "MTP speculative vs plain greedy decoding (batch 1) of " + dir,
                                                       MachineInfo.Collect(dev)) { Plot = new Bench.PlotSpec("tokens_per_s", "layers") };
                result.With("device", dev.ToString()).With("new_tokens", n).With("repetitions", parse.GetValue(reps)).With("warmup", parse.GetValue(warmup))
                      .With("torch_threads", TorchSharp.torch.get_num_threads());
                result.Command = "whale " + string.Join(" ", parse.Tokens.Select(t => t.Value.Contains(' ') ? $"\"{t.Value}\"" : t.Value));
                MtpExperiment.AddTo(result, s, cfg);
                var files = Bench.ResultWriter.Write(result, folder);
                AnsiConsole.MarkupLine($"wrote {Markup.Escape(files.Json)}");
            }
            return s.AllSame ? 0 : 1;
        });
        return cmd;
    }
}
