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
public sealed record HubParityResult(string Name, double MaxRelativeError, bool GenerationsEqual, long[] ExpectedGenerated, long[] ActualGenerated)
{
    /// <summary>The parity bar: logits within 1e-4 relative (fp32) and identical greedy tokens.</summary>
    public const double Tolerance = 1e-4;
    public bool Passed => MaxRelativeError <= Tolerance && GenerationsEqual;
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

    /// <summary>Compares a model with a reference.safetensors (from transformers or from WhaleTech).</summary>
    public static HubParityResult Compare(DeepSeekLM model, string referencePath, string? name = null)
    {
        var file = SafeTensorsFile.Open(referencePath);
        using var ids = file.ToTensor("input_ids");                                              // [B, T]
        using var expectedLogits = file.ToTensor("logits").to_type(ScalarType.Float32);         // [B, T, V]
        using var expectedGen = file.ToTensor("generated");                                     // [B, T + N]
        int newTokens = (int)(expectedGen.shape[1] - ids.shape[1]);
        if (newTokens <= 0) throw new WhaleFormatException(referencePath, "'generated' must be longer than 'input_ids' (prompt + new tokens)");
        var (logits, generated) = Run(model, ids, newTokens);
        using (logits) using (generated)
        {
            if (!logits.shape.SequenceEqual(expectedLogits.shape))
                throw new WhaleFormatException(referencePath, $"logits [{string.Join(", ", expectedLogits.shape)}] but the model gives [{string.Join(", ", logits.shape)}]");
            double scale = expectedLogits.abs().max().item<float>();
            double err = (logits - expectedLogits).abs().max().item<float>() / Math.Max(scale, 1e-30);
            var exp = expectedGen.to_type(ScalarType.Int64).data<long>().ToArray();
            var act = generated.data<long>().ToArray();
            return new HubParityResult(name ?? Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(referencePath))) ?? referencePath, err, exp.SequenceEqual(act), exp, act);
        }
    }

    /// <summary>Writes a reference.safetensors.</summary>
    public static void WriteReference(string path, Tensor inputIds, Tensor logits, Tensor generated, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var meta = new Dictionary<string, string> { ["format"] = "pt", ["producer"] = "WhaleTech" };
        if (metadata is not null) foreach (var (k, v) in metadata) meta[k] = v;
        SafeTensorsWriter.Write(path, [("input_ids", inputIds), ("logits", logits), ("generated", generated)], meta);
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
            using (logits) using (generated)
                WriteReference(Path.Combine(folder, ReferenceFile), ids, logits, generated, new Dictionary<string, string> { ["seed"] = seed.ToString() });
            folders.Add(folder);
        }
        return folders;
    }
}
