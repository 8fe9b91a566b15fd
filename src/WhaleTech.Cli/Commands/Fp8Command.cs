// `whale fp8 …`: the FP8 simulator from the command line.
//   whale fp8 cast 464 465 2^-10        one value through both formats and both overflow modes
//   whale fp8 sweep [--start --count]   all 2^32 float32 bit patterns vs libtorch's float8 casts → JSON
//   whale fp8 lab                       SQNR / flushed-to-zero table for outlier channels/tokens, gradient underflow
//   whale fp8 accum                     the limited-precision accumulator: error vs K with/without promotion
//   whale fp8 analyze m.safetensors   the lab's report for every tensor of a checkpoint (--write-roundtrip)
//   whale fp8 train                     BF16 vs FP8 recipes on a small DeepSeekLM: relative loss gap over seeds
//                                       (run folders in <out>.runs, --checkpoint-every, --resume, Ctrl-C: Lab/Runs)
//                                       (--optimizer-moments fp32,bf16: also BF16 vs FP32 AdamW moments)
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using WhaleTech.Fp8;
using WhaleTech.IO;
using WhaleTech.Runtime;
using WhaleTech.Training;
using WhaleTech.Lab.Fp8;

namespace WhaleTech.Cli.Commands;

public static class Fp8Command
{
    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static Command Build()
    {
        var cmd = new Command("fp8", "Simulated FP8 (E4M3/E5M2): casts, exhaustive check against libtorch, scaling lab, accumulator model.");
        cmd.Subcommands.Add(BuildCast());
        cmd.Subcommands.Add(BuildSweep());
        cmd.Subcommands.Add(BuildLab());
        cmd.Subcommands.Add(BuildAccum());
        cmd.Subcommands.Add(BuildTrain());
        cmd.Subcommands.Add(BuildAnalyze());
        return cmd;
    }

    static Command BuildCast()
    {
        var values = new Argument<string[]>("values") { Description = "Numbers to cast, e.g. 464 465 -1e-30 inf nan 2^-10 1.5*2^-10.", Arity = ArgumentArity.OneOrMore };
        var cmd = new Command("cast", "Show what E4M3 and E5M2 (non-saturating and saturating) make of some float32 values.") { values };
        cmd.SetAction(parse =>
        {
            Backend.Initialize();
            var table = new Table().AddColumns("x (float32)", "e4m3", "e4m3 sat", "e5m2", "e5m2 sat", "libtorch agrees");
            foreach (var text in parse.GetValue(values)!)
            {
                float x = ParseNumber(text);
                var cells = new List<string> { Show(x) };
                bool agree = true;
                foreach (var (f, mode) in Fp8Sweep.Cases)
                {
                    float emu = Fp8Cast.Round(x, f, mode);
                    using var t = TorchSharp.torch.tensor(new[] { x });
                    using var r = Fp8Cast.Reference(t, f, mode);
                    agree &= BitConverter.SingleToUInt32Bits(emu) == BitConverter.SingleToUInt32Bits(r.data<float>()[0]);
                    cells.Add(Show(emu));
                }
                cells.Add(agree ? "yes" : "NO");
                table.AddRow(cells.Select(Markup.Escape).ToArray());
            }
            AnsiConsole.Write(table);
            return 0;
        });
        return cmd;
    }

    static string Show(float v) => float.IsNaN(v) ? "NaN" : v.ToString("R", CultureInfo.InvariantCulture) + (v == 0 && float.IsNegative(v) ? " (−0)" : "");

    /// <summary>Parses 465, -1e-30, inf, nan, 2^-10 and a*2^k.</summary>
    internal static float ParseNumber(string text)
    {
        var s = text.Trim().ToLowerInvariant();
        if (s is "inf" or "+inf") return float.PositiveInfinity;
        if (s == "-inf") return float.NegativeInfinity;
        if (s == "nan") return float.NaN;
        double factor = 1;
        int star = s.IndexOf('*');
        if (star > 0)
        {
            if (!double.TryParse(s[..star], NumberStyles.Float, CultureInfo.InvariantCulture, out factor))
                throw new WhaleArgumentException("values", text, "must be a number such as 465, -1e-30, inf, nan, 2^-10 or 1.5*2^-10");
            s = s[(star + 1)..];
        }
        if (s.StartsWith("2^", StringComparison.Ordinal) && int.TryParse(s[2..], CultureInfo.InvariantCulture, out int k))
            return (float)(factor * Math.Pow(2, k));
        if (double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v)) return (float)(factor * v);
        throw new WhaleArgumentException("values", text, "must be a number such as 465, -1e-30, inf, nan, 2^-10 or 1.5*2^-10");
    }

    static Command BuildSweep()
    {
        var device = Cli.DeviceOption();
        var start = new Option<long>("--start") { Description = "First float32 bit pattern (0 … 2^32−1).", DefaultValueFactory = _ => 0 };
        var count = new Option<long>("--count") { Description = "How many bit patterns (default: all 2^32).", DefaultValueFactory = _ => Fp8Sweep.AllPatterns };
        var chunk = new Option<int>("--chunk") { Description = "Patterns per chunk.", DefaultValueFactory = _ => 1 << 22 };
        var output = new Option<string>("--out") { Description = "JSON result file (written atomically).", DefaultValueFactory = _ => "benchmarks/results/fp8/sweep.json" };
        var cmd = new Command("sweep", "Compare the emulated E4M3/E5M2 casts with libtorch's float8 casts on every float32 bit pattern (both overflow modes).")
            { device, start, count, chunk, output };
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            long s = parse.GetValue(start), n = parse.GetValue(count);
            if (s < 0 || s >= Fp8Sweep.AllPatterns) throw new WhaleArgumentException("--start", s, "must be in [0, 2^32 − 1]");
            if (n == Fp8Sweep.AllPatterns) n -= s;
            var path = parse.GetValue(output)!;
            var clock = Stopwatch.StartNew();
            List<SweepCase> cases = [];
            AnsiConsole.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask($"{n:N0} patterns × 4 casts", maxValue: n);
                    cases = Fp8Sweep.Run(s, n, dev, parse.GetValue(chunk), done => task.Value = done);
                });
            long mismatches = cases.Sum(c => c.Mismatches);
            var result = new
            {
                kind = "fp8-sweep",
                description = "Emulated FP8 casts (Fp8Cast.Round, float32 tensor ops) vs libtorch x.to(float8).to(float32); saturating reference = clamp(x, ±max) then cast. Float32 bit patterns compared exactly.",
                start = s, count = n, complete = s == 0 && n == Fp8Sweep.AllPatterns,
                total_mismatches = mismatches,
                elapsed_s = Math.Round(clock.Elapsed.TotalSeconds, 1),
                cases,
                machine = MachineInfo.Collect(dev),
            };
            AtomicFile.WriteAllText(path, JsonSerializer.Serialize(result, Indented));
            foreach (var c in cases) AnsiConsole.MarkupLine($"{c.Format} {c.Overflow}: {c.Checked:N0} checked, [{(c.Mismatches == 0 ? "green" : "red")}]{c.Mismatches:N0} mismatches[/]");
            AnsiConsole.MarkupLine($"wrote {Markup.Escape(path)} ({clock.Elapsed.TotalSeconds:F0} s)");
            return mismatches == 0 ? 0 : 1;
        });
        return cmd;
    }

    // H100 reference values (8192×4096, bulk SQNR in dB; docs/fp8.md): (outliers, factor, granularity) → dB.
    static readonly Dictionary<(string, double, string), double> Reference = new()
    {
        [("none", 1, "tensor")] = 31.5, [("none", 1, "1x128")] = 31.8, [("none", 1, "128x128")] = 31.5,
        [("channels", 1e5, "tensor")] = 5.5, [("channels", 1e5, "1x128")] = 26.5, [("channels", 1e5, "128x128")] = 22.1,
        [("tokens", 1e5, "tensor")] = 5.3, [("tokens", 1e5, "1x128")] = 31.8, [("tokens", 1e5, "128x128")] = 24.7,
    };

    static Command BuildLab()
    {
        var device = Cli.DeviceOption();
        var rows = new Option<long>("--rows") { Description = "Tokens (rows) of the Gaussian tensor.", DefaultValueFactory = _ => 8192 };
        var cols = new Option<long>("--cols") { Description = "Channels (columns).", DefaultValueFactory = _ => 4096 };
        var outliers = new Option<int>("--outliers") { Description = "Outlier channels / tokens injected.", DefaultValueFactory = _ => 8 };
        var seed = new Option<long>("--seed") { DefaultValueFactory = _ => 0 };
        var placement = new Option<string>("--placement") { Description = "contiguous (adjacent outliers, one tile; as in the H100 reference) or random.", DefaultValueFactory = _ => "contiguous" };
        var output = new Option<string?>("--out") { Description = "Write JSON + Markdown here (file name without extension), atomically." };
        var cmd = new Command("lab", "SQNR and flushed-to-zero share of E4M3 under per-tensor / per-row / 1x128 / 128x128 scales, with outlier channels or tokens ×1e3…1e5; gradient underflow.")
            { device, rows, cols, outliers, seed, placement, output };
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            if (dev.type != TorchSharp.DeviceType.CPU) AnsiConsole.MarkupLine("[yellow]note: the lab runs on CPU tensors[/]");
            long r = Guard.Positive("--rows", parse.GetValue(rows)), c = Guard.Positive("--cols", parse.GetValue(cols));
            var clock = Stopwatch.StartNew();
            var place = Guard.OneOf("--placement", parse.GetValue(placement)!, "contiguous", "random") == "random" ? OutlierPlacement.Random : OutlierPlacement.Contiguous;
            var table = Fp8Lab.SqnrTable(r, c, parse.GetValue(outliers), seed: parse.GetValue(seed), placement: place);
            var underflow = new[] { 1e-3, 1e-4, 1e-5, 1e-6 }
                .SelectMany(std => new[] { Fp8Format.E4M3, Fp8Format.E5M2 }.Select(f => (f, std, Fp8Lab.GradientUnderflow(f, std))))
                .Select(t => new { format = t.f.Name, std = t.std, flushed_unscaled = t.Item3.Unscaled, flushed_per_tensor_scale = t.Item3.Scaled }).ToList();

            var md = new System.Text.StringBuilder();
            md.AppendLine($"# FP8 lab: E4M3, {r}×{c} Gaussian, {parse.GetValue(outliers)} {place.ToString().ToLowerInvariant()} outliers, seed {parse.GetValue(seed)}");
            md.AppendLine();
            md.AppendLine("Bulk SQNR (outlier rows/columns excluded) and share of nonzero bulk values flushed to zero. `H100 ref` = the H100 reference value (docs/fp8.md).");
            md.AppendLine();
            md.AppendLine("| outliers | factor | scale | SQNR dB | H100 ref dB | flushed to zero |");
            md.AppendLine("|---|---|---|---|---|---|");
            var view = new Table().AddColumns("outliers", "factor", "scale", "SQNR dB", "H100 ref", "flushed");
            foreach (var row in table)
            {
                string refText = Reference.TryGetValue((row.Outliers, row.Factor, row.Granularity), out var v) ? v.ToString("F1", CultureInfo.InvariantCulture) : "";
                string[] cells = [row.Outliers, row.Outliers == "none" ? "" : row.Factor.ToString("0e0", CultureInfo.InvariantCulture), row.Granularity,
                    row.SqnrDb.ToString("F1", CultureInfo.InvariantCulture), refText, row.FlushedShare.ToString("P1", CultureInfo.InvariantCulture)];
                md.AppendLine("| " + string.Join(" | ", cells) + " |");
                view.AddRow(cells.Select(Markup.Escape).ToArray());
            }
            md.AppendLine();
            md.AppendLine("Gradient underflow: share of N(0, std²) gradients flushed to zero by a plain cast vs with a per-tensor scale.");
            md.AppendLine();
            md.AppendLine("| format | std | flushed, no scale | flushed, per-tensor scale |");
            md.AppendLine("|---|---|---|---|");
            foreach (var u in underflow)
                md.AppendLine($"| {u.format} | {u.std:0e0} | {u.flushed_unscaled:P1} | {u.flushed_per_tensor_scale:P1} |");
            AnsiConsole.Write(view);
            AnsiConsole.WriteLine(string.Join(Environment.NewLine, md.ToString().Split('\n').SkipWhile(l => !l.StartsWith("Gradient", StringComparison.Ordinal))));
            var path = parse.GetValue(output);
            if (path is not null)
            {
                var machine = MachineInfo.Collect(TorchSharp.torch.CPU);
                md.AppendLine().AppendLine($"Machine: {machine} — {clock.Elapsed.TotalSeconds:F0} s.");
                var json = new { kind = "fp8-lab", rows = r, cols = c, outliers = parse.GetValue(outliers), placement = place.ToString().ToLowerInvariant(), seed = parse.GetValue(seed), format = "e4m3",
                    table = table.Select(t => new { outliers = t.Outliers, factor = t.Factor, scale = t.Granularity, sqnr_db = t.SqnrDb, flushed_share = t.FlushedShare,
                        h100_reference_db = Reference.TryGetValue((t.Outliers, t.Factor, t.Granularity), out var rv) ? rv : (double?)null }),
                    gradient_underflow = underflow, elapsed_s = Math.Round(clock.Elapsed.TotalSeconds, 1), machine };
                AtomicFile.WriteAllText(path + ".json", JsonSerializer.Serialize(json, Indented));
                AtomicFile.WriteAllText(path + ".md", md.ToString());
                AnsiConsole.MarkupLine($"wrote {Markup.Escape(path)}.json and .md");
            }
            return 0;
        });
        return cmd;
    }

    static Command BuildAccum()
    {
        var bits = new Option<int>("--bits") { Description = "Fraction bits the accumulator keeps.", DefaultValueFactory = _ => 14 };
        var interval = new Option<int>("--nc") { Description = "Promotion interval N_C.", DefaultValueFactory = _ => 128 };
        var ks = new Option<string>("--k") { Description = "Comma-separated inner dimensions K.", DefaultValueFactory = _ => "128,256,512,1024,2048,4096" };
        var output = new Option<string?>("--out") { Description = "Write JSON + Markdown here (file name without extension), atomically." };
        var cmd = new Command("accum", "Relative error of an FP8 GEMM with a limited-precision accumulator vs K, with and without promotion to FP32.") { bits, interval, ks, output };
        cmd.SetAction(parse =>
        {
            Backend.Initialize();
            var kList = parse.GetValue(ks)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(t => long.TryParse(t, out var k) && k > 0 ? k : throw new WhaleArgumentException("--k", t, "must be positive integers separated by commas")).ToList();
            var never = new Fp8Accumulator(parse.GetValue(bits), 0);
            var promoted = new Fp8Accumulator(parse.GetValue(bits), Guard.Positive("--nc", parse.GetValue(interval)));
            var rows = kList.Select(k => new { k, no_promotion = never.RelativeError(k), promoted = promoted.RelativeError(k) }).ToList();
            var md = new System.Text.StringBuilder();
            md.AppendLine($"# FP8 accumulator model: {never.MantissaBits} fraction bits (truncating), promotion every {promoted.PromotionInterval}");
            md.AppendLine().AppendLine("Relative Frobenius error of a 16×K · K×16 GEMM on E4M3 codes vs an exact float64 GEMM of the same codes.").AppendLine();
            md.AppendLine("| K | no promotion | promoted |").AppendLine("|---|---|---|");
            foreach (var row in rows) md.AppendLine($"| {row.k} | {row.no_promotion:E2} | {row.promoted:E2} |");
            Console.Write(md.ToString());
            var path = parse.GetValue(output);
            if (path is not null)
            {
                var machine = MachineInfo.Collect(TorchSharp.torch.CPU);
                AtomicFile.WriteAllText(path + ".json", JsonSerializer.Serialize(new { kind = "fp8-accumulator", bits = never.MantissaBits, nc = promoted.PromotionInterval, rows, machine }, Indented));
                AtomicFile.WriteAllText(path + ".md", md.AppendLine().AppendLine($"Machine: {machine}").ToString());
            }
            return 0;
        });
        return cmd;
    }

    static Command BuildTrain()
    {
        var device = Cli.DeviceOption();
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => 150 };
        var seeds = new Option<string>("--seeds") { Description = "Comma-separated seeds.", DefaultValueFactory = _ => "1,2" };
        var hidden = new Option<int>("--hidden") { DefaultValueFactory = _ => 128 };
        var layers = new Option<int>("--layers") { DefaultValueFactory = _ => 2 };
        var batch = new Option<int>("--batch") { DefaultValueFactory = _ => 8 };
        var seqLen = new Option<int>("--seq-len") { DefaultValueFactory = _ => 64 };
        var recipes = new Option<string>("--recipes") { Description = "Comma-separated: " + string.Join(", ", Fp8Recipe.All.Select(r => r.Name)) + " (bf16 is the baseline and always runs).", DefaultValueFactory = _ => "bf16,deepseek-v3,hybrid-tensor" };
        var moments = new Option<string>("--optimizer-moments") { Description = "AdamW moment storage, comma-separated: fp32, bf16 (DeepSeek-V3 §3.3) or fp32,bf16 to run every recipe with both and report the BF16-moment gap.", DefaultValueFactory = _ => "fp32" };
        var folder = RunFolderOptions.ForExperiment(null, "the JSON + Markdown + PNG results (written atomically)", prefix: true);
        var output = folder.Out;
        var cmd = new Command("train", "Train a small DeepSeekLM with BF16 linears and with FP8 recipes; report the relative loss gap (DeepSeek-V3: < 0.25%).")
            { device, steps, seeds, hidden, layers, batch, seqLen, recipes, moments, output, folder.CheckpointEvery, folder.Resume };
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            var seedList = parse.GetValue(seeds)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(t => int.TryParse(t, out var v) ? v : throw new WhaleArgumentException("--seeds", t, "must be integers separated by commas")).ToArray();
            var recipeList = parse.GetValue(recipes)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(n => Fp8Recipe.Parse("--recipes", n)).Prepend(Fp8Recipe.Bf16).DistinctBy(r => r.Name).ToList();
            var d = new Fp8ComparisonOptions();
            var o = new Fp8ComparisonOptions
            {
                Loop = d.Loop with { Steps = Guard.Positive("--steps", parse.GetValue(steps)), BatchSize = Guard.Positive("--batch", parse.GetValue(batch)) },
                Model = d.Model with { Hidden = Guard.Positive("--hidden", parse.GetValue(hidden)), Layers = Guard.Positive("--layers", parse.GetValue(layers)) },
                SequenceLength = Guard.Positive("--seq-len", parse.GetValue(seqLen)), Seeds = seedList,
                OptimizerMoments = MomentPrecisions.ParseList("--optimizer-moments", parse.GetValue(moments)),
            };
            // The baseline is BF16 linears with FP32 moments when those run, else with the first precision asked for.
            var baseline = Fp8TrainingComparison.Label("bf16", o.OptimizerMoments.Contains(MomentPrecision.Fp32) ? MomentPrecision.Fp32 : o.OptimizerMoments[0]);
            var labels = recipeList.SelectMany(r => o.OptimizerMoments.Select(m => Fp8TrainingComparison.Label(r.Name, m))).ToList();
            using var stop = StopSignal.Listen();
            var experiment = folder.Experiment(parse, stop);
            var runs = Fp8TrainingComparison.Run(recipeList, o, dev, r =>
                AnsiConsole.MarkupLine($"seed {r.Seed} {Markup.Escape(r.Recipe)}: final train loss {r.Loss[^1]:F4}, eval {r.FinalEvalLoss:F4}, {r.SkippedSteps} skipped, {r.Seconds:F0} s"), experiment);
            bool partial = experiment.Interrupted;
            var paired = runs.Where(r => runs.Any(b => b.Recipe == baseline && b.Seed == r.Seed)).ToList();   // all of them unless interrupted
            var gaps = Fp8TrainingComparison.Gaps(paired, baseline);
            var momentGaps = Fp8TrainingComparison.MomentGaps(runs);
            var md = new System.Text.StringBuilder();
            md.AppendLine($"# FP8 training comparison: DeepSeekLM (MLA, hidden {o.Model.Hidden}, {o.Model.Layers} layers), {o.Loop.Steps} steps, batch {o.Loop.BatchSize}×{o.SequenceLength}, seeds {string.Join(",", seedList)}");
            if (partial) md.AppendLine().AppendLine($"**Partial:** interrupted after {runs.Count} of {seedList.Length * labels.Count} runs; continue with the same command and `--resume`.");
            md.AppendLine().AppendLine($"Relative gap of the final evaluation loss vs the {baseline} baseline (same init and batches per seed). DeepSeek-V3 reports < 0.25% at scale.").AppendLine();
            md.AppendLine("| recipe | AdamW moments | optimizer state | mean eval loss | mean relative gap | per seed |").AppendLine("|---|---|---|---|---|---|");
            foreach (var g in gaps)
            {
                var first = runs.First(r => r.Recipe == g.Recipe);
                md.AppendLine($"| {g.Recipe} | {first.Moments} | {first.OptimizerStateBytes / 1024.0:N0} KiB | {g.MeanFinalEvalLoss:F4} | {g.MeanRelativeGap:P3} | {string.Join(", ", g.PerSeed.Select(v => v.ToString("P3", CultureInfo.InvariantCulture)))} |");
            }
            if (momentGaps.Count > 0)
            {
                md.AppendLine().AppendLine("BF16 vs FP32 AdamW moments (DeepSeek-V3 §3.3), same recipe, init and batches: (L_bf16-moments − L_fp32-moments) / L_fp32-moments of the final evaluation loss.").AppendLine();
                md.AppendLine("| recipe | mean eval loss, bf16 moments | mean relative gap | per seed |").AppendLine("|---|---|---|---|");
                foreach (var g in momentGaps)
                    md.AppendLine($"| {g.Recipe} | {g.MeanFinalEvalLoss:F4} | {g.MeanRelativeGap:P3} | {string.Join(", ", g.PerSeed.Select(v => v.ToString("P3", CultureInfo.InvariantCulture)))} |");
            }
            Console.Write(md.ToString());
            var path = parse.GetValue(output);
            if (path is not null)
            {
                var machine = MachineInfo.Collect(dev);
                md.AppendLine().AppendLine($"Machine: {machine}").AppendLine().AppendLine($"![gap curves]({Path.GetFileName(path)}.png)");
                var curves = labels.Where(l => l != baseline).ToDictionary(l => l, l => Fp8TrainingComparison.GapCurve(paired, l, baseline));
                AtomicFile.WriteAllText(path + ".json", JsonSerializer.Serialize(new { kind = "fp8-training", options = o, partial, baseline, runs, gaps, moment_gaps = momentGaps, gap_curves = curves, machine }, Indented));
                AtomicFile.WriteAllText(path + ".md", md.ToString());
                var plot = new ScottPlot.Plot();
                foreach (var (name, curve) in curves)
                {
                    var line = plot.Add.Scatter(Enumerable.Range(1, curve.Length).Select(i => (double)i).ToArray(), curve.Select(v => 100 * v).ToArray());
                    line.LegendText = name;
                    line.MarkerSize = 0;
                }
                plot.Title($"Relative training-loss gap vs {baseline} (20-step window, mean over seeds)");
                plot.XLabel("step");
                plot.YLabel("gap (%)");
                plot.ShowLegend(ScottPlot.Edge.Right);                       // outside the data area
                AtomicFile.WriteAllBytes(path + ".png", plot.GetImageBytes(900, 500, ScottPlot.ImageFormat.Png));
                AnsiConsole.MarkupLine($"wrote {Markup.Escape(path)}.json, .md, .png");
            }
            return ExperimentCli.Finish(experiment, parse, path is null ? null : Path.GetFullPath(path) + ".json, .md, .png");
        });
        return cmd;
    }

    static Command BuildAnalyze()
    {
        var model = new Argument<string>("model") { Description = "A .safetensors file." };
        var format = new Option<string>("--format") { Description = "e4m3 or e5m2.", DefaultValueFactory = _ => "e4m3" };
        var roundtrip = new Option<string?>("--write-roundtrip") { Description = "Also write a copy whose floating tensors are FP8 round-tripped (128x128 blocks for matrices, 1x128 tiles for vectors)." };
        var json = new Option<string?>("--json") { Description = "Write the report as JSON here (atomically)." };
        var cmd = new Command("analyze", "SQNR and flushed-to-zero share of every tensor of a checkpoint under FP8 with per-tensor, 1x128 and 128x128 scales.") { model, format, roundtrip, json };
        cmd.SetAction(parse =>
        {
            Backend.Initialize();
            var path = parse.GetValue(model)!;
            var f = Fp8Format.Parse("--format", parse.GetValue(format)!);
            var rows = Fp8Analysis.Analyze(path, f);
            var table = new Table().AddColumns("tensor", "shape", "amax", "tensor dB", "1x128 dB", "128x128 dB", "flushed (tensor)");
            foreach (var group in rows.GroupBy(r => r.Name))
            {
                var r = group.ToList();
                table.AddRow(Markup.Escape(group.Key), string.Join("x", r[0].Shape), r[0].Amax.ToString("G4", CultureInfo.InvariantCulture),
                    r[0].SqnrDb.ToString("F1", CultureInfo.InvariantCulture), r[1].SqnrDb.ToString("F1", CultureInfo.InvariantCulture),
                    r[2].SqnrDb.ToString("F1", CultureInfo.InvariantCulture), r[0].FlushedShare.ToString("P2", CultureInfo.InvariantCulture));
            }
            AnsiConsole.Write(table);
            if (parse.GetValue(json) is { } jsonPath)
                AtomicFile.WriteAllText(jsonPath, JsonSerializer.Serialize(new { kind = "fp8-analyze", model = path, format = f.Name, rows }, Indented));
            if (parse.GetValue(roundtrip) is { } outPath)
            {
                Fp8Analysis.WriteRoundTrip(path, outPath, f);
                AnsiConsole.MarkupLine($"wrote {Markup.Escape(outPath)}");
            }
            return 0;
        });
        return cmd;
    }
}
