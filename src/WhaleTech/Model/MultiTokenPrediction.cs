// Multi-token prediction (DeepSeek-V3 §2.2, Figure 3, eqs. 21–25): D sequential modules after the main model.
// Module k (k = 1…D) sees the representation of depth k−1 at position i and the embedding of token t_{i+k}:
//
//   h'_i^k = M_k [RMSNorm(h_i^{k−1}); RMSNorm(Emb(t_{i+k}))]         (21)  eh_proj, hnorm, enorm
//   h_{1:T−k}^k = TRM_k(h'_{1:T−k}^k)                                (22)  one decoder block (MLA/MHA, dense/MoE)
//   P_{i+k+1}^k = OutHead(h_i^k)                                      (23)  shared_head.norm, then the SHARED head
//   L_MTP^k = CrossEntropy(P^k_{2+k:T+1}, t_{2+k:T+1})                (24)
//   L_MTP = λ/D · Σ_k L_MTP^k                                         (25)
//
// h_i^0 is the main model's final hidden state (after model.norm, as vLLM's DeepSeek MTP consumes it). The
// embedding and the output head are the main model's own parameters (one tensor each, "shared"). The order of
// the concatenation follows the released checkpoint and the public inference code (vLLM's deepseek_mtp): the
// normalized EMBEDDING comes first, eh_proj.weight [D, 2D] = [W_emb | W_h] — the paper writes [h; emb].
//
// Hugging Face names: module k lives at model.layers.{num_hidden_layers + k − 1} with enorm, hnorm, eh_proj,
// shared_head.norm, the block's self_attn / mlp / input_layernorm / post_attention_layernorm, and copies of the
// shared tensors, embed_tokens.weight and shared_head.head.weight. In TorchSharp the modules live in their own
// list (`mtp.{k−1}.…`); HubEntries below is the one place that maps those names to the Hub's and adds the copies.
//
// Shapes: B batch, T tokens, D hidden, V vocab; module k covers T−k positions in training.
using TorchSharp;
using WhaleTech.Attention;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Model;

/// <summary>shared_head of an MTP module: its own final RMSNorm (the head matrix itself is the main model's).</summary>
public sealed class MtpSharedHead : nn.Module
{
    internal readonly RmsNorm norm;
    public MtpSharedHead(ModelConfig cfg) : base("MtpSharedHead")
    {
        norm = new RmsNorm(cfg.HiddenSize, cfg.RmsNormEps);
        RegisterComponents();
    }
    public Tensor Norm(Tensor h) => norm.forward(h);
}

/// <summary>MTP module k: eqs. 21–22 (the head of eq. 23 is applied by the caller with the shared output head).</summary>
public sealed class MtpModule : nn.Module
{
    internal readonly RmsNorm enorm, hnorm;
    internal readonly nn.Module<Tensor, Tensor> eh_proj;
    internal readonly DecoderBlock block;
    internal readonly MtpSharedHead shared_head;
    /// <summary>k, 1-based.</summary>
    public int Depth { get; }

    public MtpModule(ModelConfig cfg, int depth, RotaryEmbedding rope, LinearFactory linear, MlpFactory moe) : base("MtpModule")
    {
        Depth = depth;
        int layer = cfg.NumHiddenLayers + depth - 1;                 // the Hub's layer index: dense or MoE like main layer `layer`
        enorm = new RmsNorm(cfg.HiddenSize, cfg.RmsNormEps);
        hnorm = new RmsNorm(cfg.HiddenSize, cfg.RmsNormEps);
        eh_proj = linear(2 * cfg.HiddenSize, cfg.HiddenSize, false, $"model.layers.{layer}.eh_proj");
        block = new DecoderBlock(cfg, layer, rope, linear, moe);
        block.Attention.LayerIndex = depth - 1;                     // its slot in the MTP cache (one layer per module)
        shared_head = new MtpSharedHead(cfg);
        RegisterComponents();
    }

    public DecoderBlock Block => block;

    /// <summary>h^k [B, T, D] from h^{k−1} [B, T, D] and the embeddings of t_{i+k} [B, T, D] (before shared_head.norm).</summary>
    public Tensor Forward(Tensor hPrev, Tensor nextEmbedding, AttentionContext ctx)
    {
        using var scope = torch.NewDisposeScope();
        var joined = torch.cat([enorm.forward(nextEmbedding), hnorm.forward(hPrev)], dim: -1);     // [B, T, 2D]
        var h = eh_proj.forward(joined);                                                           // [B, T, D]  (21)
        return block.forward(h, ctx).MoveToOuterDisposeScope();                                    // [B, T, D]  (22)
    }

    /// <summary>shared_head.norm: what the shared output head reads (23).</summary>
    public Tensor HeadInput(Tensor h) => shared_head.Norm(h);
}

public static class MultiTokenPrediction
{
    /// <summary>λ of eq. 25 in DeepSeek-V3's pre-training: 0.3 for the first 10T tokens, then 0.1.</summary>
    public const double DefaultWeight = 0.3;

    /// <summary>Per-depth losses L_MTP^k (eq. 24): module k's logits [B, T−k, V] against targets[:, k:] (token t_{i+k+1}),
    /// where targets [B, T] are the next tokens of the inputs.</summary>
    public static Tensor[] DepthLosses(IReadOnlyList<Tensor> mtpLogits, Tensor targets)
    {
        var losses = new Tensor[mtpLogits.Count];
        for (int k = 1; k <= mtpLogits.Count; k++)
        {
            long len = mtpLogits[k - 1].shape[1];
            losses[k - 1] = Losses.CrossEntropy(mtpLogits[k - 1], targets.narrow(1, k, len));
        }
        return losses;
    }

    /// <summary>L_MTP = λ/D · Σ_k L_MTP^k (eq. 25).</summary>
    public static Tensor Combine(IReadOnlyList<Tensor> depthLosses, double weight)
    {
        if (depthLosses.Count == 0) throw new Runtime.WhaleArgumentException("depth losses", 0, "needs at least one MTP depth");
        var sum = depthLosses[0];
        for (int k = 1; k < depthLosses.Count; k++) sum = sum + depthLosses[k];
        return sum * (weight / depthLosses.Count);
    }

    /// <summary>The attention context of one MTP chunk: T new positions after the cache's Length (or 0…T−1 without
    /// a cache), all real tokens. With a cache, marks the slots; the caller advances it after all D modules ran.</summary>
    public static AttentionContext Context(long batch, long tokens, InferenceCache? cache, Device device)
    {
        using var scope = torch.NewDisposeScope();
        long start = cache?.Length ?? 0;
        var valid = torch.ones(batch, tokens, dtype: ScalarType.Bool, device: device);
        var positions = torch.arange(start, start + tokens, device: device).unsqueeze(0).expand(batch, tokens);   // [B, T]
        var ctx = Context(positions, valid, cache);
        ctx.Positions.MoveToOuterDisposeScope(); ctx.Mask.MoveToOuterDisposeScope();
        return ctx;
    }

    /// <summary>The attention context of one MTP chunk with explicit RoPE <paramref name="positions"/> [B, T] and
    /// <paramref name="valid"/> [B, T] (false on left padding), as batched decoding needs. With a cache, marks the slots
    /// [Length, Length+T); the caller advances it after all D modules ran.</summary>
    public static AttentionContext Context(Tensor positions, Tensor valid, InferenceCache? cache)
    {
        using var scope = torch.NewDisposeScope();
        long start = cache?.Length ?? 0, tokens = valid.shape[1];
        Tensor mask;
        if (cache is not null) { cache.MarkNew(valid); mask = AttentionContext.BuildMask(cache.KeyValid, start, tokens); }
        else mask = AttentionContext.BuildMask(valid, 0, tokens);                                                    // [B, 1, T, S]
        return new AttentionContext { Positions = positions.alias().MoveToOuterDisposeScope(), Mask = mask.MoveToOuterDisposeScope(), Cache = cache };
    }

    // ---- Hugging Face names ----------------------------------------------------------------------------------

    /// <summary>Maps the model's own MTP names (prefix + "mtp.{j}.…") to the Hub's ("model.layers.{N+j}.…", the
    /// decoder block's parts flattened into the layer) and appends the Hub's copies of the shared tensors:
    /// model.layers.{N+j}.embed_tokens.weight (= model.embed_tokens.weight) and model.layers.{N+j}.shared_head.head.weight
    /// (= lm_head.weight, or the embedding when tie_word_embeddings). Models without MTP come back unchanged.</summary>
    public static List<(string Name, Tensor Tensor)> HubEntries(DeepSeekLM model, List<(string Name, Tensor Tensor)> entries, string prefix)
    {
        if (model.MtpModules.Count == 0) return entries;
        int n = model.Config.NumHiddenLayers;
        var result = new List<(string, Tensor)>(entries.Count + 2 * model.MtpModules.Count);
        foreach (var (name, tensor) in entries)
        {
            if (!name.StartsWith(prefix + "mtp.", StringComparison.Ordinal)) { result.Add((name, tensor)); continue; }
            var rest = name[(prefix.Length + 4)..];                                   // "{j}.enorm.weight", "{j}.block.self_attn…"
            int dot = rest.IndexOf('.');
            int j = int.Parse(rest[..dot], System.Globalization.CultureInfo.InvariantCulture);
            var inner = rest[(dot + 1)..];
            if (inner.StartsWith("block.", StringComparison.Ordinal)) inner = inner["block.".Length..];
            result.Add(($"{prefix}model.layers.{n + j}.{inner}", tensor));
        }
        foreach (var (alias, _, tensor) in SharedCopies(model, prefix)) result.Add((alias, tensor));
        return result;
    }

    /// <summary>The Hub's per-module copies of the shared tensors: (copy name, name of the tensor it copies, that tensor).</summary>
    public static IEnumerable<(string Copy, string Source, Tensor Tensor)> SharedCopies(DeepSeekLM model, string prefix = "")
    {
        int n = model.Config.NumHiddenLayers;
        bool tied = model.Config.TieWordEmbeddings;
        for (int j = 0; j < model.MtpModules.Count; j++)
        {
            yield return ($"{prefix}model.layers.{n + j}.embed_tokens.weight", $"{prefix}model.embed_tokens.weight", model.Embedding.weight!);
            yield return ($"{prefix}model.layers.{n + j}.shared_head.head.weight",
                          tied ? $"{prefix}model.embed_tokens.weight" : $"{prefix}lm_head.weight", model.HeadWeight);
        }
    }
}
