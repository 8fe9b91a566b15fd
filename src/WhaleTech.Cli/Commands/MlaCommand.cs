// `whale mla bench`: one decode step of one attention layer (MHA, GQA-8, MQA, MLA-naive, MLA-absorbed) over a
// batch × context grid, the copy bandwidth, prefill, and the absorbed-vs-materialized crossover.
// `whale mla quality`: tiny MHA/GQA/MQA/MLA models on multi-query associative recall (accuracy vs KV bytes).
// `whale mla frontier`: the same task trained to convergence over more variants, with 95% CIs.
// Both keep run folders (--out, --checkpoint-every, --resume; Ctrl-C stops cleanly: Lab/Runs/ExperimentRuns).
using System.CommandLine;
using System.Text.Json;
using Spectre.Console;
using WhaleTech.Attention;
using WhaleTech.IO;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Lab.Mla;

namespace WhaleTech.Cli.Commands;

public static class MlaCommand
{
    public static Command Build()
    {
        var cmd = new Command("mla", "Multi-head latent attention: decode benchmark, quality experiments, conversion from MHA/GQA/MQA.");
        cmd.Subcommands.Add(BuildBench());
        cmd.Subcommands.Add(BuildQuality());
        cmd.Subcommands.Add(BuildFrontier());
        cmd.Subcommands.Add(BuildConvert());
        cmd.Subcommands.Add(BuildConvertStudy());
        return cmd;
    }

    static Command BuildBench()
    {
        var device = Cli.DeviceOption();
        var shapes = new Option<string>("--shapes") { Description = "v2-lite or v3 attention shapes.", DefaultValueFactory = _ => "v2-lite" };
        var batches = new Option<long[]>("--batch") { Description = "Batch sizes (default: 1 4 on CPU, 1 16 64 128 on CUDA).", AllowMultipleArgumentsPerToken = true };
        var contexts = new Option<long[]>("--context") { Description = "Contexts (default: 256 1024 on CPU, 4096 32768 on CUDA).", AllowMultipleArgumentsPerToken = true };
        var iterations = new Option<int?>("--iterations") { Description = "Timed steps per point (median is reported)." };
        var outPath = new Option<string?>("--out") { Description = "Write all results as JSON here." };
        var cmd = new Command("bench", "Decode step time, tokens/s and KV-read GB/s per attention kind; copy bandwidth; prefill; absorb crossover.")
            { device, shapes, batches, contexts, iterations, outPath };
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            bool cuda = dev.type == TorchSharp.DeviceType.CUDA;
            var grid = cuda ? DecodeGrid.CudaV3 : DecodeGrid.CpuDefault;
            grid = grid with
            {
                Shapes = Cli.ParseShapes(parse.GetValue(shapes)!),
                Batches = parse.GetValue(batches) is { Length: > 0 } b ? b : grid.Batches,
                Contexts = parse.GetValue(contexts) is { Length: > 0 } c ? c : grid.Contexts,
                Iterations = parse.GetValue(iterations) ?? grid.Iterations,
            };
            var output = parse.InvocationConfiguration.Output;
            var console = KvCommand.Console(output);
            double copy = DecodeBenchmark.CopyBandwidthGBps(dev, cuda ? 4L << 30 : 256L << 20);
            var rows = DecodeBenchmark.Run(dev, grid);
            var table = new Table().Title($"decode step, one layer, {grid.Shapes.Name}, {grid.Dtype}, median of {grid.Iterations} (copy {copy:F1} GB/s)")
                .AddColumn("variant").AddColumn("batch").AddColumn("context").AddColumn("ms").AddColumn("tok/s").AddColumn("KV MiB").AddColumn("KV GB/s");
            foreach (var r in rows)
                table.AddRow(r.Variant, $"{r.Batch}", $"{r.Context}", r.Skipped is null ? $"{r.MedianMs:F2}" : "skip", $"{r.TokensPerSecond:F0}", $"{r.KvBytesRead / 1048576.0:F1}", $"{r.KvGBps:F1}");
            console.Write(table);
            long prefillTokens = cuda ? 4096 : 256, crossContext = cuda ? 4096 : 1024;
            var prefill = DecodeBenchmark.Prefill(dev, grid.Shapes, 1, prefillTokens, grid.Dtype);
            foreach (var p in prefill) console.WriteLine($"prefill {p.Variant}: {p.Tokens} tokens in {p.MedianMs:F1} ms ({p.TokensPerSecond:F0} tok/s)");
            var cross = DecodeBenchmark.Crossover(dev, grid.Shapes, crossContext, cuda ? [1, 4, 16, 32, 64, 128, 256, 512, 1024] : [1, 16, 64, 128, 256], grid.Dtype);
            foreach (var x in cross) console.WriteLine($"crossover S0={x.Context} T={x.NewTokens}: absorbed {x.AbsorbedMs:F2} ms ({x.AbsorbedGflop:F2} GFLOP), materialized {x.MaterializedMs:F2} ms ({x.MaterializedGflop:F2} GFLOP)");
            long? measured = DecodeBenchmark.MeasuredCrossover(cross);
            double analytic = DecodeBenchmark.AnalyticCrossover(grid.Shapes, crossContext);
            console.WriteLine($"measured crossover T = {(measured is null ? "none in range" : measured.ToString())}; FLOP estimate T* = {analytic:F0}");
            if (parse.GetValue(outPath) is { } path)
                AtomicFile.WriteAllText(path, JsonSerializer.Serialize(new
                {
                    machine = MachineInfo.Collect(dev), grid = new { shapes = grid.Shapes, grid.Batches, grid.Contexts, dtype = grid.Dtype.ToString(), grid.Warmup, grid.Iterations },
                    copy_gbps = copy, decode = rows, prefill, crossover = cross, measured_crossover = measured, analytic_crossover = analytic,
                }, new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals }));
            return 0;
        });
        return cmd;
    }

    static Command BuildQuality()
    {
        var device = Cli.DeviceOption();
        var seeds = new Option<int>("--seeds") { Description = "Seeds per attention kind.", DefaultValueFactory = _ => 3 };
        var steps = new Option<int>("--steps") { Description = "Training steps per model.", DefaultValueFactory = _ => 250 };
        var folder = RunFolderOptions.ForExperiment(null, "mla-quality.json, .md and .png");
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a table." };
        var cmd = new Command("quality", "Train tiny MHA/GQA/MQA/MLA models (matched parameters) on multi-query associative recall; accuracy vs KV bytes per token.")
            { device, seeds, steps, folder.Out, folder.CheckpointEvery, folder.Resume, json };
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            var output = parse.InvocationConfiguration.Output;
            var d = new MlaQualityOptions();
            var options = d with { Seeds = parse.GetValue(seeds), Loop = d.Loop with { Steps = parse.GetValue(steps) } };
            bool asJson = parse.GetValue(json);
            using var stop = Training.StopSignal.Listen();
            var runs = folder.Experiment(parse, stop);
            var result = MlaQuality.Run(options, dev, asJson ? null : output.WriteLine, runs);
            var jsonText = JsonSerializer.Serialize(new { machine = MachineInfo.Collect(dev), result }, new JsonSerializerOptions { WriteIndented = true });
            if (asJson) output.WriteLine(jsonText);
            else
            {
                var table = new Table().Title("MQAR recall vs KV cache (eval accuracy, mean ± std over seeds)")
                    .AddColumn("attention").AddColumn("params").AddColumn("KV B/token (bf16)").AddColumn("accuracy").AddColumn("eval loss");
                foreach (var x in result.Summary)
                    table.AddRow(x.Attention, $"{x.Parameters:N0}", $"{x.KvBytesPerTokenBf16:N0}", $"{x.MeanAccuracy:P1} ± {x.StdAccuracy:P1}", $"{x.MeanEvalLoss:F3}");
                KvCommand.Console(output).Write(table);
            }
            var dir = parse.GetValue(folder.Out);
            if (dir is not null)
            {
                Directory.CreateDirectory(dir);
                AtomicFile.WriteAllText(Path.Combine(dir, "mla-quality.json"), jsonText);
                AtomicFile.WriteAllBytes(Path.Combine(dir, "mla-quality.png"), MlaQuality.Plot(result));
                AtomicFile.WriteAllText(Path.Combine(dir, "mla-quality.md"),
                    $"# MLA quality: MQAR recall vs KV bytes per token\n\n" +
                    (result.Partial ? $"**Partial:** interrupted after {result.Runs.Count} of {options.Attentions.Length * options.Seeds} runs; continue with the same command and `--resume`.\n\n" : "") +
                    $"{MachineInfo.Collect(dev)}\n\n| attention | params | KV B/token (bf16) | accuracy (mean ± std) | eval loss |\n|---|---|---|---|---|\n" +
                    string.Concat(result.Summary.Select(x => $"| {x.Attention} | {x.Parameters} | {x.KvBytesPerTokenBf16} | {x.MeanAccuracy:P1} ± {x.StdAccuracy:P1} | {x.MeanEvalLoss:F3} |\n")) +
                    "\n![accuracy vs KV bytes](mla-quality.png)\n");
            }
            return ExperimentCli.Finish(runs, parse, dir is null ? null : Path.GetFullPath(dir), asJson ? Console.Error : output);
        });
        return cmd;
    }

    static Command BuildFrontier()
    {
        var device = Cli.DeviceOption();
        var variants = new Option<string[]>("--variants") { Description = "Variants: mha, gqaN, mqa, mla-<kv_lora_rank>-<rope_dims> (default: mha gqa2 mqa mla-8-4 mla-12-4 mla-28-4 mla-24-8).", AllowMultipleArgumentsPerToken = true };
        var seeds = new Option<int>("--seeds") { Description = "Seeds per variant.", DefaultValueFactory = _ => 3 };
        var firstSeed = new Option<int>("--first-seed") { Description = "First seed (trains seeds first-seed … first-seed + seeds − 1): split one experiment's seeds over processes or sessions, then pool them with --from.", DefaultValueFactory = _ => 0 };
        var steps = new Option<int?>("--steps") { Description = "Training steps per model (default 2000; --quick 150)." };
        var evalEvery = new Option<int?>("--eval-every") { Description = "Steps between eval points of the convergence curve (default 100; --quick 50)." };
        var quick = new Option<bool>("--quick") { Description = "Tiny smoke run: 2 variants, 150 steps, 128 eval sequences (finishes in a minute; not converged)." };
        var evalSets = new Option<int>("--eval-sets") { Description = "Also score every final model on this many shared eval sets, sampled excess loss and exact KL, and report the eval set's share of the seed spread (0 = off).", DefaultValueFactory = _ => 0 };
        var folder = RunFolderOptions.ForExperiment(null, "mla-frontier.json, .md, .png and -curves.png");
        var outDir = folder.Out;
        var pairs = new Option<int?>("--pairs") { Description = "MQAR key–value pairs per sequence (default 4; queries = pairs)." };
        var symbols = new Option<int?>("--symbols") { Description = "Key and value vocabulary sizes (default 16 each); the language's vocabulary." };
        var task = new Option<string>("--task") { Description = "What to train on: mqar (recall; Bayes loss 0) or language (topic-mixture bigram language; Bayes loss computed exactly per sequence).", DefaultValueFactory = _ => "mqar" };
        var topics = new Option<int?>("--topics") { Description = "Topics of --task language (default 4)." };
        var length = new Option<int?>("--length") { Description = "Sequence length of --task language (default 32)." };
        var hidden = new Option<int?>("--hidden") { Description = "Model width D (default 32; 4 heads)." };
        var lr = new Option<double?>("--lr") { Description = "Peak AdamW learning rate (default 3e-3)." };
        var from = new Option<string[]>("--from") { Description = "Re-render earlier mla-frontier.json files into --out (no training); several files (same task) are merged and the verdict recomputed; files of several run lengths also test convergence across the lengths (mla-frontier-convergence.png) and whether each variant's paired gap to the largest cache still moves between them.", AllowMultipleArgumentsPerToken = true };
        var convergedGain = new Option<double>("--converged-gain") { Description = "With --from over several run lengths: a variant counts as converged when its last step change gains less than this many nats per doubling of the steps (upper 95 % bound), and a gap to the reference as settled when it moves by less than this per doubling (95 % interval).", DefaultValueFactory = _ => WhaleTech.Lab.Mla.FrontierConvergence.DefaultTolerance };
        var cmd = new Command("frontier", "Train MHA/GQA/MQA/MLA variants (matched parameters) on MQAR or a synthetic language to convergence; excess loss over Bayes vs KV bytes per token with 95% CIs.")
            { device, variants, seeds, firstSeed, steps, evalEvery, evalSets, quick, outDir, folder.CheckpointEvery, folder.Resume, pairs, symbols, task, topics, length, hidden, lr, from, convergedGain };
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            var output = parse.InvocationConfiguration.Output;
            if (parse.GetValue(from) is { Length: > 0 } fromPaths)
            {
                var dirOut = parse.GetValue(outDir) ?? throw new WhaleArgumentException("--out", null, "must be given with --from");
                var parts = fromPaths.Select(MlaFrontier.Read).ToList();
                var ordered = parts.OrderByDescending(p => p.Result.Options.Loop.Steps).ToList();   // the longest runs' machine and commands first
                var merged = MlaFrontier.Pool(ordered.Select(p => p.Result).ToList(), parse.GetValue(convergedGain));
                var longest = ordered.Where(p => p.Result.Options.Loop.Steps == merged.Options.Loop.Steps).ToList();
                MlaFrontier.Write(merged, dirOut, longest[0].Machine, string.Join(" ; ", longest.Select(p => p.Command)));
                output.WriteLine($"re-rendered {string.Join(", ", fromPaths)} into {dirOut}");
                output.WriteLine("verdict: " + merged.Verdict);
                return 0;
            }
            bool q = parse.GetValue(quick);
            var o = new MlaFrontierOptions();
            if (q) o = o with { Variants = ["mqa", "mla-12-4"], Loop = o.Loop with { Steps = 150 }, EvalEvery = 50, EvalSequences = 128 };
            if (parse.GetValue(variants) is { Length: > 0 } v) o = o with { Variants = v };
            o = o with { Seeds = parse.GetValue(seeds), FirstSeed = parse.GetValue(firstSeed), Loop = o.Loop with { Steps = parse.GetValue(steps) ?? o.Loop.Steps }, EvalEvery = parse.GetValue(evalEvery) ?? o.EvalEvery, EvalSets = parse.GetValue(evalSets) };
            if (parse.GetValue(pairs) is int np) o = o with { Pairs = np, Queries = np };
            if (parse.GetValue(symbols) is int ns) o = o with { Keys = ns, Values = ns };
            o = o with { TaskKind = parse.GetValue(task)! };
            if (parse.GetValue(topics) is int nt) o = o with { Topics = nt };
            if (parse.GetValue(length) is int nl) o = o with { Length = nl };
            if (parse.GetValue(hidden) is int nh) o = o with { Model = o.Model with { Hidden = nh } };
            if (parse.GetValue(lr) is double l) o = o with { Loop = o.Loop with { LearningRate = l } };
            using var stop = Training.StopSignal.Listen();
            var runs = folder.Experiment(parse, stop);
            var result = MlaFrontier.Run(o, dev, output.WriteLine, runs);
            var table = new Table().Title($"{(o.TaskKind == "language" ? "Language" : "MQAR")} excess loss vs KV cache (mean ± 95% CI over seeds)")
                .AddColumn("variant").AddColumn("params").AddColumn("KV B/token (bf16)").AddColumn("excess loss").AddColumn("accuracy").AddColumn("flat tail");
            foreach (var x in result.Points)
                table.AddRow(x.Variant, $"{x.Parameters:N0}", $"{x.KvBytesPerTokenBf16:N0}", $"{x.MeanExcessLoss:F4} ± {x.ExcessLossCi95:F4}", $"{x.MeanAccuracy:P1} ± {x.AccuracyCi95:P1}", $"{x.FlatTailRuns}/{x.Seeds}");
            KvCommand.Console(output).Write(table);
            output.WriteLine("verdict: " + result.Verdict);
            var dir = parse.GetValue(outDir);
            if (dir is not null)
            {
                MlaFrontier.Write(result, dir, MachineInfo.Collect(dev).ToString(), "whale " + string.Join(" ", parse.Tokens.Select(t => t.Value)));
                output.WriteLine($"wrote {dir}");
            }
            return ExperimentCli.Finish(runs, parse, dir is null ? null : Path.GetFullPath(dir), output);
        });
        return cmd;
    }

    static Command BuildConvert()
    {
        var checkpoint = new Argument<string>("checkpoint") { Description = "A Hugging Face checkpoint folder of a standard-attention (mha, gqa, mqa) WhaleTech model." };
        var rank = new Option<int?>("--kv-lora-rank") { Description = "kv_lora_rank Dc (default: 2·Hkv·Dh − rope dims, the source's KV bytes)." };
        var ropeDims = new Option<int?>("--rope-dims") { Description = "qk_rope_head_dim Dr, even, ≤ head dim (default: the head dim)." };
        var strategy = new Option<string>("--strategy") { Description = "Partial-RoPE pairs to keep: high, low, uniform or 2-norm (MHA2MLA's score, here of the weights: a checkpoint carries no calibration text; the library takes calibration tokens).", DefaultValueFactory = _ => "high" };
        var svd = new Option<string>("--svd") { Description = "Latent factorization: joint (keys and values together) or separate.", DefaultValueFactory = _ => "joint" };
        var norm = new Option<string>("--latent-norm") { Description = "linearized (exact, for inference) or rms (approximate, for fine-tuning).", DefaultValueFactory = _ => "linearized" };
        var outDir = new Option<string>("--out") { Description = "Output checkpoint folder (config.json + safetensors, HF DeepSeek-V3 layout).", Required = true };
        var json = new Option<bool>("--json") { Description = "Print the conversion report as JSON." };
        var cmd = new Command("convert", "Convert a MHA/GQA/MQA checkpoint into MLA (TransMLA / MHA2MLA); writes a Hugging Face DeepSeek checkpoint folder.")
            { checkpoint, rank, ropeDims, strategy, svd, norm, outDir, json };
        cmd.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            var folder = parse.GetValue(checkpoint)!;
            if (!Directory.Exists(folder)) throw new WhaleArgumentException("checkpoint", folder, "must be an existing checkpoint folder");
            var normMode = parse.GetValue(norm)!.Trim().ToLowerInvariant() switch
            {
                "linearized" => WhaleTech.Model.LatentNormMode.Linearized,
                "rms" => WhaleTech.Model.LatentNormMode.Rms,
                var other => throw new WhaleArgumentException("--latent-norm", other, "must be linearized or rms"),
            };
            var options = new WhaleTech.Model.MlaConversionOptions
            {
                KvLoraRank = parse.GetValue(rank), RopeDims = parse.GetValue(ropeDims),
                Strategy = WhaleTech.Model.MlaConversionOptions.ParseStrategy(parse.GetValue(strategy)!),
                Factorization = WhaleTech.Model.MlaConversionOptions.ParseFactorization(parse.GetValue(svd)!), Norm = normMode,
            };
            var (source, _) = WhaleTech.Hub.HubCheckpoint.Load(folder, strict: true);
            using var src = source;
            var (mla, report) = WhaleTech.Model.MlaConversion.FromStandard(src, options);
            using var m = mla;
            WhaleTech.Hub.HubCheckpoint.Save(m, parse.GetValue(outDir)!, WhaleTech.Hub.HubCheckpoint.DefaultMaxShardBytes, false);
            if (parse.GetValue(json)) output.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
            else
            {
                output.WriteLine($"converted {report.SourceAttention} (Hkv {report.KvHeads}, head dim {report.HeadDim}) → mla: kv_lora_rank {report.KvLoraRank}, qk_rope_head_dim {report.RopeDims}, qk_nope_head_dim {report.NopeDims}, rope_theta {report.RopeTheta:G6}");
                output.WriteLine($"RoPE pairs kept: {string.Join(" ", report.RopePairs)} (ranked by {report.PairScore}; frequencies exact: {report.FrequenciesExact}); KV elements/token/layer {report.SourceKvElementsPerTokenPerLayer} → {report.TargetKvElementsPerTokenPerLayer}");
                output.WriteLine($"latent relative error per layer: {string.Join(" ", report.LatentRelativeError.Select(e => e.ToString("G3")))}; residual (un-RoPE'd) key energy: {string.Join(" ", report.ResidualKeyFraction.Select(e => e.ToString("P1")))}");
                output.WriteLine(report.Exact ? "exact: the MLA model computes the source's function (fp32 rounding)" : "approximate: see the residual key energy and latent error above");
                output.WriteLine($"wrote {parse.GetValue(outDir)}");
            }
            return 0;
        });
        return cmd;
    }

    static Command BuildConvertStudy()
    {
        var device = Cli.DeviceOption();
        var seeds = new Option<int>("--seeds") { Description = "Seeds.", DefaultValueFactory = _ => 3 };
        var sourceSteps = new Option<int?>("--source-steps") { Description = "Training steps of the source models (default 2000; --quick 100)." };
        var ftSteps = new Option<int?>("--finetune-steps") { Description = "Fine-tune steps after conversion, and from-scratch steps (default 500; --quick 50)." };
        var quick = new Option<bool>("--quick") { Description = "Smoke run (one target, short training; finishes in about a minute)." };
        var folder = RunFolderOptions.ForExperiment(null, "mla-convert.json, .md and -curves.png (each training also keeps its final weights, model.safetensors)");
        var pairs = new Option<int?>("--pairs") { Description = "MQAR key–value pairs per sequence (default 4; queries = pairs)." };
        var symbols = new Option<int?>("--symbols") { Description = "Key and value vocabulary sizes (default 16 each)." };
        var cmd = new Command("convert-study", "TransMLA (GQA/MQA → MLA) and MHA2MLA (MHA → MLA) on MQAR: conversion, fine-tune and from-scratch MLA at equal KV bytes, with 95% CIs.")
            { device, seeds, sourceSteps, ftSteps, quick, folder.Out, folder.CheckpointEvery, folder.Resume, pairs, symbols };
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            var output = parse.InvocationConfiguration.Output;
            bool q = parse.GetValue(quick);
            var o = new MlaConversionExperimentOptions { Seeds = parse.GetValue(seeds) };
            if (q) o = o with { SourceSteps = 100, FineTuneSteps = 50, MhaTargets = [new(12, 4)], RankSweep = [4, 28], Task = o.Task with { EvalEvery = 50, EvalSequences = 128 } };
            o = o with { SourceSteps = parse.GetValue(sourceSteps) ?? o.SourceSteps, FineTuneSteps = parse.GetValue(ftSteps) ?? o.FineTuneSteps };
            if (parse.GetValue(pairs) is int np) o = o with { Task = o.Task with { Pairs = np, Queries = np } };
            if (parse.GetValue(symbols) is int ns) o = o with { Task = o.Task with { Keys = ns, Values = ns } };
            using var stop = Training.StopSignal.Listen();
            var runs = folder.Experiment(parse, stop);
            var result = MlaConversionExperiment.Run(o, dev, output.WriteLine, runs);
            var dir = parse.GetValue(folder.Out);
            if (dir is not null)
            {
                MlaConversionExperiment.Write(result, dir, MachineInfo.Collect(dev).ToString(), "whale " + string.Join(" ", parse.Tokens.Select(t => t.Value)));
                output.WriteLine($"wrote {dir}");
            }
            return ExperimentCli.Finish(runs, parse, dir is null ? null : Path.GetFullPath(dir), output);
        });
        return cmd;
    }
}
