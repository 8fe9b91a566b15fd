// `whale mla bench`: one decode step of one attention layer (MHA, GQA-8, MQA, MLA-naive, MLA-absorbed) over a
// batch × context grid, the copy bandwidth, prefill, and the absorbed-vs-materialized crossover.
// `whale mla quality`: tiny MHA/GQA/MQA/MLA models on multi-query associative recall (accuracy vs KV bytes).
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
        var cmd = new Command("mla", "Multi-head latent attention: decode benchmark and quality experiment.");
        cmd.Subcommands.Add(BuildBench());
        cmd.Subcommands.Add(BuildQuality());
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
        var outDir = new Option<string?>("--out") { Description = "Folder for mla-quality.json, .md and .png." };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a table." };
        var cmd = new Command("quality", "Train tiny MHA/GQA/MQA/MLA models (matched parameters) on multi-query associative recall; accuracy vs KV bytes per token.")
            { device, seeds, steps, outDir, json };
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            var output = parse.InvocationConfiguration.Output;
            var options = new MlaQualityOptions { Seeds = parse.GetValue(seeds), Steps = parse.GetValue(steps) };
            bool asJson = parse.GetValue(json);
            var result = MlaQuality.Run(options, dev, asJson ? null : output.WriteLine);
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
            if (parse.GetValue(outDir) is { } dir)
            {
                Directory.CreateDirectory(dir);
                AtomicFile.WriteAllText(Path.Combine(dir, "mla-quality.json"), jsonText);
                AtomicFile.WriteAllBytes(Path.Combine(dir, "mla-quality.png"), MlaQuality.Plot(result));
                AtomicFile.WriteAllText(Path.Combine(dir, "mla-quality.md"),
                    $"# MLA quality: MQAR recall vs KV bytes per token\n\n{MachineInfo.Collect(dev)}\n\n| attention | params | KV B/token (bf16) | accuracy (mean ± std) | eval loss |\n|---|---|---|---|---|\n" +
                    string.Concat(result.Summary.Select(x => $"| {x.Attention} | {x.Parameters} | {x.KvBytesPerTokenBf16} | {x.MeanAccuracy:P1} ± {x.StdAccuracy:P1} | {x.MeanEvalLoss:F3} |\n")) +
                    "\n![accuracy vs KV bytes](mla-quality.png)\n");
            }
            return 0;
        });
        return cmd;
    }
}
