// Logit and greedy-generation parity with Hugging Face transformers, both directions (docs/hf-interop.md):
//   transformers → WhaleTech   tools/hf/make_fixtures.py (GPU machine) writes tiny random checkpoints + a
//                              reference.safetensors; HfParityTests loads them here and compares.
//   WhaleTech → transformers   ExportForTransformers writes tiny WhaleTech checkpoints + WhaleTech's reference;
//                              tools/hf/check_reverse.py loads them with transformers and compares.
//
// reference.safetensors:  input_ids [B, T] I64,  logits [B, T, V] F32 (full forward, no cache),
//                         generated [B, T + N] I64 (greedy, KV cache, N new tokens, no stop token).
// Error measure: max|a − b| / max|b| over all logits — relative to the logit scale, because elementwise
// relative error is meaningless for logits near 0; fp32 reorderings and fp64-vs-fp32 RoPE tables stay ~1e-6.
//
// The tiny configs exercise what parity must cover: MLA with and without q_lora (V3 / V2-Lite), a dense first
// layer, group-limited routing with a NON-ZERO e_score_correction_bias (≥ 0: transformers masks groups with
// 0.0, DeepSeek with −inf; with non-negative biased scores both select the same), YaRN with positions beyond
// original_max_position_embeddings, V2 softmax routing without a bias (deepseek_v2).
// Shapes: B batch (2), T prompt (12), N new tokens (8), V vocab.
using TorchSharp;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

using WhaleTech.IO;

namespace WhaleTech.Hub;

/// <summary>The outcome of comparing a model with a reference file.</summary>
/// <remarks>Errors are max|a − b| / max|b| with the scale max|b| over the whole reference (per position: the
/// numerator over that position's logits). <see cref="LayerErrors"/> (when the reference holds hidden states)
/// compares the output of each decoder layer the same way; <see cref="FirstDivergentLayer"/> is the first layer
/// whose error is above the bar.</remarks>
public sealed record HubParityResult(string Name, double MaxRelativeError, bool GenerationsEqual, long[] ExpectedGenerated, long[] ActualGenerated)
{
    /// <summary>The fp32 bar: what two fp32 implementations of the same model reach (reordered sums, fp64-vs-fp32
    /// RoPE tables: ~1e-6); ≤ 1e-5 relative. A wrong rope_theta (10001 for 10000) is above it at the positions
    /// the references use.</summary>
    public const double Fp32Tolerance = 1e-5;
    /// <summary>The bf16 bar (8 mantissa bits: one rounding is 2^-9 ≈ 2e-3 relative; a few layers of them): 3e-2.
    /// Greedy tokens may then differ where two logits are within the bf16 noise, so they are reported, not required.</summary>
    public const double Bf16Tolerance = 3e-2;
    /// <summary>The default bar (fp32).</summary>
    public const double Tolerance = Fp32Tolerance;

    /// <summary>Element type of the model's weights: float32, bfloat16 or float16.</summary>
    public string DType { get; init; } = "float32";
    public double Bar => DType == "float32" ? Fp32Tolerance : Bf16Tolerance;
    public bool Passed => MaxRelativeError <= Bar && (RopeError ?? 0) <= Bar && (GenerationsEqual || DType != "float32");

    /// <summary>Per batch row and position: max |Δlogit| over the vocabulary / max |reference logit|. [B][T]</summary>
    public double[][] PositionErrors { get; init; } = [];
    public int WorstBatch { get; init; }
    public int WorstPosition { get; init; }
    /// <summary>Per decoder layer output (index 0 = the embeddings), when the reference has hidden_states.{i}; else null.</summary>
    public double[]? LayerErrors { get; init; }
    /// <summary>The first decoder layer (1-based; 0 = embeddings) above the bar, or null (none, or no hidden states).</summary>
    public int? FirstDivergentLayer { get; init; }
    /// <summary>The RoPE cos/sin tables vs the reference's rope.cos / rope.sin (WhaleTech's layout [P, R]), when it has them.
    /// RoPE is where rope_theta and rope_scaling act; a wrong rope_theta barely moves the logits of a short prompt
    /// (10001 for 10000: ~1e-6, at the level of fp32 reordering noise) but moves the tables above Fp32Tolerance (RealFilesTests.ParityDetectsRopeThetaOffByOnePartIn10000).</summary>
    public double? RopeError { get; init; }
    /// <summary>First position (row-major over B × T + N) where the greedy tokens differ, or null.</summary>
    public int? FirstDifferentToken { get; init; }

    public string Summary()
    {
        var where = $"worst at batch {WorstBatch}, position {WorstPosition}";
        var layers = LayerErrors is null ? "no per-layer reference"
            : FirstDivergentLayer is int l ? $"first divergent layer {(l == 0 ? "0 (embeddings)" : l.ToString())} (error {Math.Max(LayerErrors[l], l == 1 ? RopeError ?? 0 : 0):E2})" : $"every layer within the bar (max {LayerErrors.Max():E2})";
        if (RopeError is double rope) layers += $", RoPE tables {(rope <= Bar ? "match" : "DIFFER")} ({rope:E2}{(rope <= Bar ? "" : ": rope_theta or rope_scaling")})";
        return $"{Name} ({DType}): max |Δlogit| / max |logit| = {MaxRelativeError:E2} ({where}; bar {Bar:G1}), {layers}, greedy tokens " +
               (GenerationsEqual ? "identical" : $"DIFFER from token {FirstDifferentToken}") + $" → {(Passed ? "PASS" : "FAIL")}";
    }
}

public static class HubParity
{
    public const string ReferenceFile = "reference.safetensors";
    public const int Batch = 2, PromptLength = 12, NewTokens = 8;

    /// <summary>The tiny configs (name → config), the same as tools/hf/make_fixtures.py builds.</summary>
    public static IReadOnlyDictionary<string, ModelConfig> TinyConfigs { get; } = new Dictionary<string, ModelConfig>
    {
        // DeepSeek-V3 style: q_lora, 1 dense + 2 MoE layers, sigmoid noaux_tc over 4 groups (top-2 groups), YaRN ×4.
        ["v3"] = Tiny("deepseek_v3") with
        {
            QLoraRank = 24, NRoutedExperts = 8, NSharedExperts = 1, NumExpertsPerTok = 2, NGroup = 4, TopkGroup = 2,
            TopkMethod = "noaux_tc", ScoringFunc = "sigmoid", NormTopkProb = true, RoutedScalingFactor = 2.5,
            RopeScaling = new RopeScaling { Type = "yarn", Factor = 4, OriginalMaxPositionEmbeddings = 16, BetaFast = 32, BetaSlow = 1, Mscale = 1, MscaleAllDim = 1 },
        },
        // DeepSeek-V2-Lite shape (no q_lora, 2 shared experts, mscale 0.707) on transformers' DeepseekV3 class (V3 routing).
        ["v2-lite-v3class"] = Tiny("deepseek_v3") with
        {
            QLoraRank = null, NRoutedExperts = 8, NSharedExperts = 2, NumExpertsPerTok = 2, NGroup = 1, TopkGroup = 1,
            TopkMethod = "noaux_tc", ScoringFunc = "sigmoid", NormTopkProb = false, RoutedScalingFactor = 1.0,
            RopeScaling = new RopeScaling { Type = "yarn", Factor = 4, OriginalMaxPositionEmbeddings = 16, BetaFast = 32, BetaSlow = 1, Mscale = 0.707, MscaleAllDim = 0.707 },
        },
        // DeepSeek-V2 format (deepseek_v2, no bias key): softmax, group_limited_greedy; YaRN with mscale_all_dim 0,
        // the setting where transformers' DeepseekV2 and DeepSeek's code agree (docs/hf-interop.md).
        ["v2-lite"] = Tiny("deepseek_v2") with
        {
            QLoraRank = null, NRoutedExperts = 8, NSharedExperts = 2, NumExpertsPerTok = 2, NGroup = 4, TopkGroup = 2,
            TopkMethod = "group_limited_greedy", ScoringFunc = "softmax", NormTopkProb = false, RoutedScalingFactor = 1.0,
            RopeScaling = new RopeScaling { Type = "yarn", Factor = 4, OriginalMaxPositionEmbeddings = 16, BetaFast = 32, BetaSlow = 1, Mscale = 1, MscaleAllDim = 0 },
        },
    };

    static ModelConfig Tiny(string modelType) => new()
    {
        ModelType = modelType, Architectures = [modelType == "deepseek_v3" ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"],
        VocabSize = 96, HiddenSize = 32, IntermediateSize = 64, MoeIntermediateSize = 16, NumHiddenLayers = 3, FirstKDenseReplace = 1,
        NumAttentionHeads = 4, NumKeyValueHeads = 4, KvLoraRank = 16, QkNopeHeadDim = 8, QkRopeHeadDim = 8, VHeadDim = 8,
        MaxPositionEmbeddings = 64, RmsNormEps = 1e-6, RopeTheta = 10000, InitializerRange = 0.1, Attention = "mla",
    };

    /// <summary>A tiny random model: weights N(0, 0.1), RMSNorm weights U(0.5, 1.5), router bias U(0, 0.3) where persistent.</summary>
    public static DeepSeekLM CreateTinyModel(string name, long seed = 0)
    {
        if (!TinyConfigs.TryGetValue(name, out var cfg))
            throw new WhaleArgumentException("tiny model", name, "must be one of " + string.Join(", ", TinyConfigs.Keys));
        torch.manual_seed(seed);
        var model = new DeepSeekLM(cfg.Validate());
        using (torch.no_grad())
        {
            foreach (var (n, p) in model.named_parameters())
                if (p.dim() == 1 && (n.EndsWith("norm.weight", StringComparison.Ordinal) || n.EndsWith("layernorm.weight", StringComparison.Ordinal)))
                    p.uniform_(0.5, 1.5);
            foreach (var layer in Moe.MoeLayers.Find(model))
                if (layer.gate.BiasIsPersistent) layer.gate.Bias.uniform_(0.0, 0.3);
        }
        model.eval();
        return model;
    }

    /// <summary>WhaleTech's reference for <paramref name="inputIds"/> [B, T]: logits [B, T, V] and greedy sequences [B, T + N].</summary>
    public static (Tensor Logits, Tensor Generated) Run(DeepSeekLM model, Tensor inputIds, int newTokens = NewTokens)
    {
        using var noGrad = torch.no_grad();
        model.eval();
        var device = model.Embedding.weight!.device;
        using var ids = inputIds.to(device);
        var logits = model.forward(ids).to_type(ScalarType.Float32).cpu();                      // [B, T, V]
        var prompts = Enumerable.Range(0, (int)inputIds.shape[0])
            .Select(b => inputIds[b].data<long>().Select(v => (int)v).ToArray()).ToArray();
        var result = Generation.Generate(model, prompts, new SamplingOptions { MaxNewTokens = newTokens, Temperature = 0, StopTokens = [] });
        var rows = prompts.Select((p, b) => p.Select(v => (long)v).Concat(result.Completions[b].Select(v => (long)v)).ToArray()).ToArray();
        var generated = torch.tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, rows[0].Length]); // [B, T + N]
        return (logits, generated);
    }

    /// <summary>The output of the embeddings and of every decoder layer for <paramref name="inputIds"/> [B, T]
    /// (full forward, no cache): L + 1 tensors [B, T, D], float32, on the CPU.</summary>
    public static Tensor[] LayerOutputs(DeepSeekLM model, Tensor inputIds)
    {
        using var noGrad = torch.no_grad();
        model.eval();
        var device = model.Embedding.weight!.device;
        using var ids = inputIds.to(device);
        long B = ids.shape[0], T = ids.shape[1];
        using var positions = torch.arange(0, T, device: device).unsqueeze(0).expand(B, T);
        using var valid = torch.ones(B, T, dtype: ScalarType.Bool, device: device);
        using var mask = Core.AttentionContext.BuildMask(valid, 0, T);
        var ctx = new Core.AttentionContext { Positions = positions, Mask = mask };
        var outputs = new List<Tensor>();
        var h = model.Embedding.forward(ids);
        outputs.Add(h.to_type(ScalarType.Float32).cpu());
        foreach (var block in model.Layers)
        {
            var next = block.forward(h, ctx);
            h.Dispose();
            h = next;
            outputs.Add(h.to_type(ScalarType.Float32).cpu());
        }
        h.Dispose();
        return outputs.ToArray();
    }

    static double RelativeError(Tensor actual, Tensor expected)
    {
        double scale = expected.abs().max().item<float>();
        return (actual - expected).abs().max().item<float>() / Math.Max(scale, 1e-30);
    }

    /// <summary>Compares a model with a reference.safetensors (from transformers or from WhaleTech): logits at every
    /// position, greedy tokens, and — when the reference holds hidden_states.0 … hidden_states.L — every layer.</summary>
    public static HubParityResult Compare(DeepSeekLM model, string referencePath, string? name = null)
    {
        var file = SafeTensorsFile.Open(referencePath);
        foreach (var required in new[] { "input_ids", "logits", "generated" })
            if (!file.Tensors.Any(t => t.Name == required)) throw new WhaleFormatException(referencePath, $"must hold '{required}' (input_ids, logits, generated; see {ReferenceFile} in docs/hf-interop.md)");
        using var ids = file.ToTensor("input_ids");                                              // [B, T]
        using var expectedLogits = file.ToTensor("logits").to_type(ScalarType.Float32);         // [B, T, V]
        using var expectedGen = file.ToTensor("generated");                                     // [B, T + N]
        if (ids.dim() != 2) throw new WhaleFormatException(referencePath, $"'input_ids' must be [B, T], not [{string.Join(", ", ids.shape)}]");
        int newTokens = (int)(expectedGen.shape[1] - ids.shape[1]);
        if (newTokens <= 0) throw new WhaleFormatException(referencePath, "'generated' must be longer than 'input_ids' (prompt + new tokens)");
        var (logits, generated) = Run(model, ids, newTokens);
        using (logits) using (generated)
        {
            if (!logits.shape.SequenceEqual(expectedLogits.shape))
                throw new WhaleFormatException(referencePath, $"logits [{string.Join(", ", expectedLogits.shape)}] but the model gives [{string.Join(", ", logits.shape)}]");
            double scale = Math.Max(expectedLogits.abs().max().item<float>(), 1e-30);
            using var perPosition = (logits - expectedLogits).abs().amax([2]) / scale;          // [B, T]
            var rows = Enumerable.Range(0, (int)perPosition.shape[0]).Select(b => perPosition[b].data<float>().Select(v => (double)v).ToArray()).ToArray();
            double err = rows.SelectMany(r => r).DefaultIfEmpty(0).Max();
            int wb = 0, wt = 0;
            for (int b = 0; b < rows.Length; b++) for (int t = 0; t < rows[b].Length; t++) if (rows[b][t] > rows[wb][wt]) (wb, wt) = (b, t);
            var exp = expectedGen.to_type(ScalarType.Int64).data<long>().ToArray();
            var act = generated.data<long>().ToArray();
            int? firstDiff = null;
            for (int i = 0; i < Math.Min(exp.Length, act.Length); i++) if (exp[i] != act[i]) { firstDiff = i; break; }
            var dtype = model.Embedding.weight!.dtype switch { ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", _ => "float32" };
            double bar = dtype == "float32" ? HubParityResult.Fp32Tolerance : HubParityResult.Bf16Tolerance;

            double[]? layerErrors = null;
            int? firstLayer = null;
            int layers = model.Config.NumHiddenLayers;
            var names = file.Tensors.Select(t => t.Name).ToHashSet();
            if (Enumerable.Range(0, layers + 1).All(i => names.Contains($"hidden_states.{i}")))
            {
                var outputs = LayerOutputs(model, ids);
                try
                {
                    layerErrors = new double[layers + 1];
                    for (int i = 0; i <= layers; i++)
                    {
                        using var expected = file.ToTensor($"hidden_states.{i}").to_type(ScalarType.Float32);
                        if (!expected.shape.SequenceEqual(outputs[i].shape))
                            throw new WhaleFormatException(referencePath, $"'hidden_states.{i}' is [{string.Join(", ", expected.shape)}] but layer {i} gives [{string.Join(", ", outputs[i].shape)}]");
                        layerErrors[i] = RelativeError(outputs[i], expected);
                        if (firstLayer is null && layerErrors[i] > bar) firstLayer = i;
                    }
                }
                finally { foreach (var o in outputs) o.Dispose(); }
            }
            double? ropeError = null;
            if (names.Contains("rope.cos") && names.Contains("rope.sin"))
            {
                using var cos = file.ToTensor("rope.cos").to_type(ScalarType.Float32);
                using var sin = file.ToTensor("rope.sin").to_type(ScalarType.Float32);
                var (mc, ms) = model.Rotary.FullTables;
                if (!cos.shape.SequenceEqual(mc.shape)) ropeError = double.PositiveInfinity;
                else
                {
                    using var c = mc.detach().cpu().clone();
                    using var sn = ms.detach().cpu().clone();
                    ropeError = Math.Max(RelativeError(c, cos), RelativeError(sn, sin));
                }
                if (ropeError > bar && (firstLayer is null || firstLayer > 1)) firstLayer = 1;   // the first decoder layer is the first to use them
            }
            return new HubParityResult(name ?? Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(referencePath))) ?? referencePath, err, exp.SequenceEqual(act), exp, act)
            {
                DType = dtype, RopeError = ropeError, PositionErrors = rows, WorstBatch = wb, WorstPosition = wt, LayerErrors = layerErrors, FirstDivergentLayer = firstLayer, FirstDifferentToken = firstDiff,
            };
        }
    }

    /// <summary>Writes a reference.safetensors.</summary>
    public static void WriteReference(string path, Tensor inputIds, Tensor logits, Tensor generated, IReadOnlyDictionary<string, string>? metadata = null, Tensor[]? hiddenStates = null, (Tensor Cos, Tensor Sin)? rope = null)
    {
        var meta = new Dictionary<string, string> { ["format"] = "pt", ["producer"] = "WhaleTech" };
        if (metadata is not null) foreach (var (k, v) in metadata) meta[k] = v;
        var tensors = new List<(string, Tensor)> { ("input_ids", inputIds), ("logits", logits), ("generated", generated) };
        if (hiddenStates is not null) tensors.AddRange(hiddenStates.Select((h, i) => ($"hidden_states.{i}", h)));
        if (rope is { } r) { tensors.Add(("rope.cos", r.Cos)); tensors.Add(("rope.sin", r.Sin)); }
        SafeTensorsWriter.Write(path, tensors, meta);
    }

    /// <summary>The WhaleTech → transformers direction: every tiny model saved under <paramref name="outDir"/>/{name}/
    /// with WhaleTech's reference.safetensors, for tools/hf/check_reverse.py. Returns the folders.</summary>
    public static IReadOnlyList<string> ExportForTransformers(string outDir, long seed = 0)
    {
        var folders = new List<string>();
        foreach (var name in TinyConfigs.Keys)
        {
            using var model = CreateTinyModel(name, seed);
            var folder = Path.Combine(outDir, name);
            model.SavePretrained(folder);
            using var gen = new torch.Generator((ulong)(seed + 1));
            using var ids = torch.randint(0, model.Config.VocabSize, [Batch, PromptLength], dtype: ScalarType.Int64, generator: gen);
            var (logits, generated) = Run(model, ids);
            var hidden = LayerOutputs(model, ids);
            using (logits) using (generated)
                WriteReference(Path.Combine(folder, ReferenceFile), ids, logits, generated, new Dictionary<string, string> { ["seed"] = seed.ToString() }, hidden, model.Rotary.FullTables);
            foreach (var h in hidden) h.Dispose();
            folders.Add(folder);
        }
        return folders;
    }
}
