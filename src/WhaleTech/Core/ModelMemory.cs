// Memory estimates of a model (Runtime/MemoryEstimate.cs holds the budget and the itemized estimate): its
// parameters counted analytically from the config, the module tree's native overhead, and what training and
// inference add (gradients, AdamW moments, saved activations, logits, KV caches). Doubles throughout, so no
// derived size can overflow before it is compared with the budget.
using WhaleTech.Runtime;

namespace WhaleTech.Core;

public static class ModelMemory
{
    /// <summary>Parameters of <paramref name="c"/> (analytic; embeddings, attention, MLP/MoE, norms, head, MTP).</summary>
    public static double Parameters(ModelConfig c)
    {
        double d = c.HiddenSize, v = c.VocabSize, h = c.NumAttentionHeads, layers = c.NumHiddenLayers;
        double attention;
        if (string.Equals(c.Attention, "mla", StringComparison.OrdinalIgnoreCase))
        {
            double qk = (double)c.QkNopeHeadDim + c.QkRopeHeadDim;
            double q = c.QLoraRank is int dq and > 0 ? d * dq + dq + dq * h * qk : d * h * qk;
            attention = q + d * ((double)c.KvLoraRank + c.QkRopeHeadDim) + c.KvLoraRank + (double)c.KvLoraRank * h * ((double)c.QkNopeHeadDim + c.VHeadDim) + h * c.VHeadDim * d;
        }
        else
        {
            double dh = c.HeadDim ?? (c.NumAttentionHeads > 0 ? d / h : d);
            double kv = c.Attention.Equals("mha", StringComparison.OrdinalIgnoreCase) ? h : c.Attention.Equals("mqa", StringComparison.OrdinalIgnoreCase) ? 1 : c.NumKeyValueHeads;
            attention = d * h * dh + 2 * d * kv * dh + h * dh * d;
        }
        double dense = 3 * d * c.IntermediateSize;
        double moe = c.NRoutedExperts is int e and > 0
            ? 3 * d * c.MoeIntermediateSize * ((double)e + (c.NSharedExperts ?? 0)) + e * d + e
            : dense;
        double moeLayers = c.NRoutedExperts is > 0 ? Math.Max(0, layers - c.FirstKDenseReplace) : 0;
        double perLayerCommon = attention + 2 * d;
        double total = v * d + (c.TieWordEmbeddings ? 0 : v * d) + d
                       + layers * perLayerCommon + (layers - moeLayers) * dense + moeLayers * moe;
        total += c.NumNextnPredictLayers * (perLayerCommon + moe + 2 * d * d + 3 * d);
        return total;
    }

    /// <summary>The sizes of <paramref name="c"/> an estimate depends on, for messages: "hidden_size 64, num_hidden_layers 2, …".</summary>
    public static string Sizes(ModelConfig c)
        => $"hidden_size {c.HiddenSize}, num_hidden_layers {c.NumHiddenLayers}, vocab_size {c.VocabSize}, intermediate_size {c.IntermediateSize}"
           + (c.NRoutedExperts is int e ? $", n_routed_experts {e}, moe_intermediate_size {c.MoeIntermediateSize}" : "");

    /// <summary>Native-object overhead of the module tree (TorchSharp modules and tensor handles), per layer and expert.</summary>
    public static double Structure(ModelConfig c)
    {
        double experts = c.NRoutedExperts is int e and > 0 ? ((double)e + (c.NSharedExperts ?? 0)) * Math.Max(0, c.NumHiddenLayers - c.FirstKDenseReplace) : 0;
        return ((double)c.NumHiddenLayers + c.NumNextnPredictLayers) * 64 * 1024 + experts * 16 * 1024;
    }

    /// <summary>Building the model (fp32 weights) — what the DeepSeekLM constructor checks.</summary>
    public static MemoryEstimate ForModel(ModelConfig c, double bytesPerParameter = 4)
        => new MemoryEstimate().Add("parameters", Parameters(c) * bytesPerParameter).Add("modules", Structure(c));

    /// <summary>One training step: weights, gradients, AdamW moments, saved activations and logits for B × T.</summary>
    public static MemoryEstimate ForTraining(ModelConfig c, double batch, double sequence, double momentBytes = 4)
    {
        double p = Parameters(c);
        double tokens = batch * sequence;
        double d = c.HiddenSize, h = c.NumAttentionHeads;
        double width = Math.Max(c.IntermediateSize, (double)c.MoeIntermediateSize * ((c.NumExpertsPerTok ?? 0) + (c.NSharedExperts ?? 0)));
        // Saved for backward per token and layer: ~16 vectors of D, the MLP's 3 intermediates, the attention probabilities (H × T).
        double perLayer = tokens * (16 * d + 3 * width + 2 * h * sequence) * 4;
        double logits = tokens * c.VocabSize * 4 * 3;
        return ForModel(c)
            .Add("gradients", p * 4)
            .Add("optimizer state", p * 2 * momentBytes)
            .Add("activations", (c.NumHiddenLayers + c.NumNextnPredictLayers) * perLayer + logits);
    }

    /// <summary>Inference: weights, the KV cache for B × context, and the logits of one forward over the prompt.</summary>
    public static MemoryEstimate ForInference(ModelConfig c, double batch, double context, double bytesPerParameter = 4)
    {
        double perToken = string.Equals(c.Attention, "mla", StringComparison.OrdinalIgnoreCase)
            ? (double)c.KvLoraRank + c.QkRopeHeadDim + c.NumAttentionHeads * ((double)c.QkNopeHeadDim + c.QkRopeHeadDim + c.VHeadDim)
            : 2.0 * c.NumAttentionHeads * (c.HeadDim ?? (c.NumAttentionHeads > 0 ? (double)c.HiddenSize / c.NumAttentionHeads : c.HiddenSize));
        return ForModel(c, bytesPerParameter)
            .Add("KV cache", batch * context * perToken * c.NumHiddenLayers * 4)
            .Add("activations", batch * context * ((double)c.VocabSize + 16 * c.HiddenSize + c.NumAttentionHeads * context) * 4);
    }

}
