// `whale checkpoint`: Hugging Face DeepSeek-V2/V3 checkpoint folders (docs/hf-interop.md).
//   inspect <folder>          config summary, parameters, tensors by dtype, FP8 blocks, MTP layers, missing/unexpected names
//   generate <folder> --ids   greedy/sampled continuation of token-id prompts (Hub models ship their own tokenizer)
//   convert <in> <out>        load (FP8 dequantized, fused experts split) and save again: --fp8, --max-shard-mb, --dtype
//   parity <folder>           compare a checkpoint with the reference.safetensors next to it (logits + greedy tokens)
//   export-parity <outdir>    tiny WhaleTech checkpoints + WhaleTech's reference, for tools/hf/check_reverse.py
using System.CommandLine;
using System.Text.Json;
using Spectre.Console;
using TorchSharp;
using WhaleTech.IO;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Core;
using WhaleTech.Hub;

namespace WhaleTech.Cli.Commands;

public static class CheckpointCommand
{
    public static Command Build()
    {
        var cmd = new Command("checkpoint", "Hugging Face DeepSeek-V2/V3 checkpoints: inspect, generate, convert, and parity with transformers.");
        cmd.Subcommands.Add(Inspect());
        cmd.Subcommands.Add(Generate());
        cmd.Subcommands.Add(Convert());
        cmd.Subcommands.Add(Parity());
        cmd.Subcommands.Add(ExportParity());
        return cmd;
    }

    static Argument<string> FolderArgument(string name = "folder") => new(name) { Description = "Checkpoint folder: config.json + model.safetensors or model.safetensors.index.json shards." };
    static Option<bool> LenientOption() => new("--lenient") { Description = "Load even with missing/unexpected tensors (e.g. MTP layers); they are listed." };

    static (DeepSeekLM Model, LoadReport Report) LoadModel(string folder, bool lenient, string device)
    {
        var (model, report) = DeepSeekLM.FromPretrained(folder, strict: !lenient, device: Backend.ResolveDevice(device));
        if (!report.IsExact)
            Console.Error.WriteLine($"lenient load: {report.Missing.Count} missing ({string.Join(", ", report.Missing.Take(5))}{(report.Missing.Count > 5 ? ", …" : "")}), " +
                                    $"{report.Unexpected.Count} unexpected ({string.Join(", ", report.Unexpected.Take(5))}{(report.Unexpected.Count > 5 ? ", …" : "")})");
        return (model, report);
    }

    static Command Inspect()
    {
        var folder = FolderArgument();
        var json = new Option<bool>("--json") { Description = "Print JSON instead of tables." };
        var cmd = new Command("inspect", "Summarize a checkpoint without loading its weights.") { folder, json };
        cmd.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            var dir = parse.GetValue(folder)!;
            if (!Directory.Exists(dir)) throw new WhaleArgumentException("folder", dir, "must be an existing checkpoint folder");
            var r = HubInspection.Of(dir);
            if (parse.GetValue(json))
            {
                output.WriteLine(JsonSerializer.Serialize(new
                {
                    folder = r.Folder, model_type = r.Config.ModelType, parameters = r.Parameters, mtp_parameters = r.MtpParameters,
                    files = r.Files, sharded = r.Sharded, by_dtype = r.ByDType, fp8_weights = r.Fp8Weights, fp8_block_size = r.Fp8BlockSize,
                    mtp_layers = r.MtpLayers, missing = r.Missing, unexpected = r.Unexpected, transformers_caveats = r.TransformersCaveats,
                }, new JsonSerializerOptions { WriteIndented = true }));
                return 0;
            }
            var c = r.Config;
            Cli.PrintTable("config", [
                ("model_type", $"{c.ModelType} ({string.Join(", ", c.Architectures ?? [])})"),
                ("layers / hidden / heads", $"{c.NumHiddenLayers} / {c.HiddenSize} / {c.NumAttentionHeads}"),
                ("attention", c.IsMla
                    ? $"MLA: q_lora {c.QLoraRank?.ToString() ?? "none"}, kv_lora {c.KvLoraRank}, nope/rope/v {c.QkNopeHeadDim}/{c.QkRopeHeadDim}/{c.VHeadDim}"
                    : c.Attention),
                ("MoE", c.NRoutedExperts is int e
                    ? $"{e} routed + {c.NSharedExperts ?? 0} shared, top-{c.NumExpertsPerTok}, {c.ScoringFunc} {c.TopkMethod}, groups {c.NGroup}/top {c.TopkGroup}, first {c.FirstKDenseReplace} dense"
                    : "dense"),
                ("RoPE", c.RopeScaling is { } rs ? $"θ {c.RopeTheta}, YaRN ×{rs.Factor} from {rs.OriginalMaxPositionEmbeddings}, mscale {rs.Mscale}/{rs.MscaleAllDim}" : $"θ {c.RopeTheta}"),
                ("parameters", $"{r.Parameters:N0} ({r.MtpParameters:N0} in MTP layers)"),
                ("files", $"{r.Files}{(r.Sharded ? " (sharded)" : "")}"),
                ("FP8 weights", r.Fp8Weights == 0 ? "none" : $"{r.Fp8Weights} ({r.Fp8BlockSize}×{r.Fp8BlockSize} blocks, dequantized on load)"),
                ("MTP layers", r.MtpLayers.Count == 0 ? "none" : string.Join(", ", r.MtpLayers.Select(l => $"model.layers.{l}")) + $" (num_nextn_predict_layers = {c.NumNextnPredictLayers})"),
            ]);
            var table = new Table().Title("stored tensors").AddColumn("dtype").AddColumn(new TableColumn("tensors").RightAligned())
                .AddColumn(new TableColumn("elements").RightAligned()).AddColumn(new TableColumn("MiB").RightAligned());
            foreach (var d in r.ByDType) table.AddRow(d.DType, d.Tensors.ToString(), d.Elements.ToString("N0"), (d.Bytes / 1048576.0).ToString("F2"));
            AnsiConsole.Write(table);
            output.WriteLine($"vs WhaleTech's model: {r.Missing.Count} missing, {r.Unexpected.Count} unexpected");
            foreach (var n in r.Missing.Take(20)) output.WriteLine("  missing:    " + n);
            foreach (var n in r.Unexpected.Take(20)) output.WriteLine("  unexpected: " + n);
            foreach (var note in r.TransformersCaveats) output.WriteLine("transformers: " + note);
            return 0;
        });
        return cmd;
    }

    static Command Generate()
    {
        var device = Cli.DeviceOption();
        var folder = FolderArgument();
        var ids = new Option<string[]>("--ids") { Description = "A prompt as comma-separated token ids; repeat for a batch.", Required = true, AllowMultipleArgumentsPerToken = true };
        var maxNew = new Option<int>("--max-new-tokens") { DefaultValueFactory = _ => 16 };
        var temperature = new Option<double>("--temperature") { Description = "0 = greedy.", DefaultValueFactory = _ => 0.0 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1 };
        var lenient = LenientOption();
        var cmd = new Command("generate", "Continue token-id prompts with a checkpoint (KV cache; no tokenizer: ids in, ids out).") { device, folder, ids, maxNew, temperature, seed, lenient };
        cmd.SetAction(parse =>
        {
            var prompts = parse.GetValue(ids)!.Select(p => Validation.Rules.Ids("--ids", p)).ToArray();   // "1,,2" is an error, not [1, 2]
            var (model, _) = LoadModel(parse.GetValue(folder)!, parse.GetValue(lenient), parse.GetValue(device)!);
            using (model)
            {
                var options = new SamplingOptions { MaxNewTokens = parse.GetValue(maxNew), Temperature = parse.GetValue(temperature), StopTokens = model.Config.EosTokenId is int eos ? [eos] : [] }.Validate();
                using var gen = new torch.Generator((ulong)parse.GetValue(seed));
                var result = Generation.Generate(model, prompts, options, gen);
                for (int i = 0; i < prompts.Length; i++)
                    parse.InvocationConfiguration.Output.WriteLine($"[{string.Join(",", prompts[i])}] → [{string.Join(",", result.Completions[i])}]");
            }
            return 0;
        });
        return cmd;
    }

    static Command Convert()
    {
        var device = Cli.DeviceOption();
        var from = FolderArgument("from");
        var to = new Argument<string>("to") { Description = "Output folder (replaced atomically; other files in it are kept)." };
        var fp8 = new Option<bool>("--fp8") { Description = "Write decoder projections as FP8 E4M3 with 128×128 weight_scale_inv (DeepSeek-V3's format)." };
        var shard = new Option<long>("--max-shard-mb") { Description = "Largest shard in MB (10⁶ bytes).", DefaultValueFactory = _ => 5000 };
        var dtype = new Option<string>("--dtype") { Description = "float32, bfloat16 or float16.", DefaultValueFactory = _ => "float32" };
        var lenient = LenientOption();
        var cmd = new Command("convert", "Load a checkpoint (FP8 dequantized, fused experts split) and save it again as WhaleTech writes Hub folders.") { device, from, to, fp8, shard, dtype, lenient };
        cmd.SetAction(parse =>
        {
            var type = Guard.OneOf("--dtype", parse.GetValue(dtype)!, "float32", "bfloat16", "float16") switch
            {
                "bfloat16" => torch.ScalarType.BFloat16, "float16" => torch.ScalarType.Float16, _ => torch.ScalarType.Float32,
            };
            long maxMb = Guard.Positive("--max-shard-mb", parse.GetValue(shard));
            var (model, _) = LoadModel(parse.GetValue(from)!, parse.GetValue(lenient), parse.GetValue(device)!);
            using (model)
            {
                model.to(type);
                var r = model.SavePretrained(parse.GetValue(to)!, maxMb * 1_000_000, parse.GetValue(fp8));
                parse.InvocationConfiguration.Output.WriteLine($"wrote {r.Tensors} tensors ({r.TotalBytes / 1048576.0:F1} MiB, {r.Fp8Weights} FP8) in {string.Join(", ", r.Files)} to {r.Folder}");
                foreach (var note in r.TransformersCaveats) parse.InvocationConfiguration.Output.WriteLine("transformers: " + note);
            }
            return 0;
        });
        return cmd;
    }

    static Command Parity()
    {
        var device = Cli.DeviceOption();
        var folder = FolderArgument();
        var lenient = LenientOption();
        var output = new Option<string>("--out") { Description = "Write the per-position (and per-layer) errors as JSON here.", DefaultValueFactory = _ => "parity.json" };
        var cmd = new Command("parity", $"Compare a checkpoint with its {HubParity.ReferenceFile}: logits at every position (fp32 bar {HubParityResult.Fp32Tolerance:G1}, " +
                                        $"bf16 bar {HubParityResult.Bf16Tolerance:G1}, relative to max |logit|), identical greedy tokens (fp32), and the first divergent layer " +
                                        "when the reference holds hidden_states.{i} (WhaleTech's export-parity writes them).") { device, folder, lenient, output };
        cmd.SetAction(parse =>
        {
            var dir = parse.GetValue(folder)!;
            var reference = Path.Combine(dir, HubParity.ReferenceFile);
            if (!File.Exists(reference)) throw new WhaleArgumentException("folder", dir, $"must hold {HubParity.ReferenceFile} (tools/hf/make_fixtures.py or `whale checkpoint export-parity`)");
            var (model, _) = LoadModel(dir, parse.GetValue(lenient), parse.GetValue(device)!);
            using (model)
            {
                var r = HubParity.Compare(model, reference);
                parse.InvocationConfiguration.Output.WriteLine(r.Summary());
                var path = parse.GetValue(output)!;
                AtomicFile.WriteAllText(path, JsonSerializer.Serialize(new
                {
                    name = r.Name, dtype = r.DType, bar = r.Bar, passed = r.Passed, max_relative_error = r.MaxRelativeError,
                    worst = new { batch = r.WorstBatch, position = r.WorstPosition },
                    position_errors = r.PositionErrors, layer_errors = r.LayerErrors, first_divergent_layer = r.FirstDivergentLayer,
                    generations_equal = r.GenerationsEqual, first_different_token = r.FirstDifferentToken,
                    expected_generated = r.ExpectedGenerated, actual_generated = r.ActualGenerated,
                }, new JsonSerializerOptions { WriteIndented = true }));
                parse.InvocationConfiguration.Output.WriteLine($"wrote {path}");
                return r.Passed ? 0 : 1;
            }
        });
        return cmd;
    }

    static Command ExportParity()
    {
        var outDir = new Argument<string>("outdir") { Description = "Folder for the tiny checkpoints (one subfolder per model)." };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var cmd = new Command("export-parity", "Write tiny WhaleTech checkpoints (V3, V2-Lite shape, V2 format) + WhaleTech's logits and greedy tokens, for tools/hf/check_reverse.py.") { outDir, seed };
        cmd.SetAction(parse =>
        {
            foreach (var f in HubParity.ExportForTransformers(parse.GetValue(outDir)!, parse.GetValue(seed)))
                parse.InvocationConfiguration.Output.WriteLine("wrote " + f);
            return 0;
        });
        return cmd;
    }
}
