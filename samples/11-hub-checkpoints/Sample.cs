// Sample 11 — Hugging Face checkpoints: a DeepSeek-V3-shaped model saved as a Hub folder (config.json + sharded
// model.safetensors with index, the names transformers and vLLM read), inspected without loading weights, loaded
// back strict (every name must match), and saved again with DeepSeek-V3's FP8 weights (E4M3 + one float32
// `weight_scale_inv` per 128×128 block, dequantized on load).
//
// Shapes: weights [out, in]; an FP8 weight [O, I] carries scales [⌈O/128⌉, ⌈I/128⌉].
using WhaleTech.IO;
using WhaleTech.Model;
using static TorchSharp.torch;
using WhaleTech.Hub;

namespace WhaleTech.Samples;

public static class S11HubCheckpoints
{
    public const string Title = "Hugging Face checkpoints: save, inspect, load, FP8";

    public static void Run(SampleContext ctx)
    {
        // A tiny V3-style model: MLA with q_lora, DeepSeekMoE (group-limited sigmoid routing with the bias), a dense
        // first layer, YaRN, and one MTP layer (stored as model.layers.{num_hidden_layers}).
        var cfg = HubParity.TinyConfigs["v3"] with { NumNextnPredictLayers = 1 };
        manual_seed(1);
        using var model = new DeepSeekLM(cfg);
        model.eval();
        var folder = Path.Combine(ctx.OutDir, "tiny-v3");
        var saved = model.SavePretrained(folder, maxShardBytes: 256 * 1024);
        ctx.Out.WriteLine($"Saved {folder}: {Directory.GetFiles(folder).Length} files ({string.Join(", ", Directory.GetFiles(folder).Select(Path.GetFileName).Order())})");

        var info = HubInspection.Of(folder);
        ctx.Out.WriteLine($"Inspect: {info.Parameters:N0} parameters ({info.MtpParameters:N0} in MTP layers {string.Join(",", info.MtpLayers)}), sharded: {info.Sharded}, " +
                          $"missing: {info.Missing.Count}, unexpected: {info.Unexpected.Count}");
        foreach (var name in StateDict.Entries(model).Select(e => e.Name).Where(n => n.StartsWith("model.layers.1.mlp.", StringComparison.Ordinal)).Take(5))
            ctx.Out.WriteLine($"  {name}");

        var (loaded, report) = DeepSeekLM.FromPretrained(folder);
        using (loaded)
        {
            loaded.eval();
            using var ids = randint(0, cfg.VocabSize, [1, 12], generator: new Generator(2));
            using var noGrad = no_grad();
            using var a = model.forward(ids);
            using var b = loaded.forward(ids);
            ctx.Out.WriteLine($"Strict load: {report.Loaded.Count} tensors, exact: {report.IsExact}; identical logits: {a.equal(b).all().item<bool>()}");
        }

        var fp8Folder = Path.Combine(ctx.OutDir, "tiny-v3-fp8");
        model.SavePretrained(fp8Folder, fp8: true);
        var fp8Info = HubInspection.Of(fp8Folder);
        var (fromFp8, _) = DeepSeekLM.FromPretrained(fp8Folder);
        using (fromFp8)
        {
            fromFp8.eval();
            // Weights: E4M3 keeps 3 mantissa bits, so each normal value moves by at most 2^-4 of itself (RNE).
            var original = StateDict.Entries(model).ToDictionary(e => e.Name, e => e.Tensor);
            double worst = 0;
            foreach (var (name, w) in StateDict.Entries(fromFp8).Where(e => HubCheckpoint.IsFp8Eligible(e.Name, e.Tensor)))
            {
                using var err = (w - original[name]).norm();
                using var size = original[name].norm();
                worst = Math.Max(worst, err.item<float>() / size.item<float>());
            }
            using var ids = randint(0, cfg.VocabSize, [1, 12], generator: new Generator(2));
            using var noGrad = no_grad();
            using var a = model.forward(ids);
            using var b = fromFp8.forward(ids);
            using var agree = a.argmax(-1).eq(b.argmax(-1)).to_type(ScalarType.Float32).mean();
            ctx.Out.WriteLine($"FP8 save: {fp8Info.Fp8Weights} weights stored as E4M3 with 128×128 block scales; worst relative weight error " +
                              $"‖Ŵ−W‖/‖W‖ = {worst:P2}; next-token argmax unchanged at {agree.item<float>():P0} of positions");
            ctx.Out.WriteLine($"Every FP8 weight within E4M3's rounding (relative error < 2^-4 = 6.25%): {worst < 1.0 / 16}");
        }
    }
}
