// A decoder-only language model in the shape of DeepSeek-V2/V3 (DeepSeek-V3 §2, Figure 2):
//   tokens → embed_tokens → N × DecoderBlock (MLA or MHA/GQA/MQA; dense or DeepSeekMoE MLP) → norm → lm_head
// Parameter names are the HF DeepseekV3ForCausalLM keys: model.embed_tokens.weight,
// model.layers.{i}.self_attn.*, model.layers.{i}.mlp.*, model.layers.{i}.input_layernorm.weight,
// model.layers.{i}.post_attention_layernorm.weight, model.norm.weight, lm_head.weight.
// With num_nextn_predict_layers = D > 0 the model also holds D multi-token-prediction modules (DeepSeek-V3 §2.2,
// MultiTokenPrediction.cs), saved as model.layers.{N}…{N+D−1} like the Hub's checkpoints.
//
// Shapes: B batch, T new tokens, D hidden, V vocab.
using TorchSharp;
using WhaleTech.Attention;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Model;

/// <summary>The HF `model` submodule: embeddings, blocks and the final norm.</summary>
public sealed class DeepSeekModel : nn.Module
{
    internal readonly TorchSharp.Modules.Embedding embed_tokens;
    internal readonly TorchSharp.Modules.ModuleList<DecoderBlock> layers;
    internal readonly RmsNorm norm;
    internal readonly RotaryEmbedding rotary_emb;

    public DeepSeekModel(ModelConfig cfg, LinearFactory linear, MlpFactory moe) : base("DeepSeekModel")
    {
        embed_tokens = nn.Embedding(cfg.VocabSize, cfg.HiddenSize);
        using (torch.no_grad()) embed_tokens.weight!.normal_(0, cfg.InitializerRange);
        int ropeDim = cfg.AttentionVariant.RopeDim(cfg);
        rotary_emb = new RotaryEmbedding(ropeDim, cfg.MaxPositionEmbeddings, cfg.RopeTheta, cfg.RopeScaling);
        layers = new TorchSharp.Modules.ModuleList<DecoderBlock>(
            Enumerable.Range(0, cfg.NumHiddenLayers).Select(i => new DecoderBlock(cfg, i, rotary_emb, linear, moe)).ToArray());
        norm = new RmsNorm(cfg.HiddenSize, cfg.RmsNormEps);
        RegisterComponents();
    }
}

public sealed class DeepSeekLM : nn.Module<Tensor, Tensor>, IO.ICheckpointLayout
{
    private readonly DeepSeekModel model;
    private readonly nn.Module<Tensor, Tensor>? lm_head;
    private readonly TorchSharp.Modules.ModuleList<MtpModule>? mtp;   // null when num_nextn_predict_layers = 0
    public ModelConfig Config { get; }

    /// <param name="linear">Makes every projection (default: nn.Linear); pass an FP8 factory to simulate FP8.</param>
    /// <param name="moe">Makes the MoE MLPs (default: DeepSeekMoE.Factory).</param>
    public DeepSeekLM(ModelConfig config, LinearFactory? linear = null, MlpFactory? moe = null) : base("DeepSeekLM")
    {
        Config = config.Validate();
        ModelMemory.ForModel(config).EnsureFits("model size (" + ModelMemory.Sizes(config) + ")");
        linear ??= Linears.Standard(config.InitializerRange);
        moe ??= Moe.DeepSeekMoE.Factory;
        model = new DeepSeekModel(config, linear, moe);
        if (!config.TieWordEmbeddings) lm_head = linear(config.HiddenSize, config.VocabSize, false, "lm_head");
        if (config.NumNextnPredictLayers > 0)
            mtp = new TorchSharp.Modules.ModuleList<MtpModule>(Enumerable.Range(1, config.NumNextnPredictLayers)
                .Select(k => new MtpModule(config, k, model.rotary_emb, linear, moe)).ToArray());
        RegisterComponents();
    }

    public IReadOnlyList<DecoderBlock> Layers => model.layers.ToList();
    public RotaryEmbedding Rotary => model.rotary_emb;
    public TorchSharp.Modules.Embedding Embedding => model.embed_tokens;
    /// <summary>The D multi-token-prediction modules (empty when num_nextn_predict_layers = 0).</summary>
    public IReadOnlyList<MtpModule> MtpModules => mtp?.ToList() ?? [];
    /// <summary>The output head's matrix [V, D] (lm_head.weight, or the embedding when tied).</summary>
    public Tensor HeadWeight => lm_head is null ? model.embed_tokens.weight! : lm_head.get_parameter("weight")!;

    /// <summary>Training / full recomputation: logits [B, T, V] for token ids [B, T] at positions 0…T−1.</summary>
    public override Tensor forward(Tensor ids) => Forward(ids);

    /// <summary>Logits [B, T, V] for <paramref name="ids"/> [B, T].</summary>
    /// <param name="positions">[B, T] RoPE positions; default start+0…T−1.</param>
    /// <param name="cache">KV cache to read and extend, or null.</param>
    /// <param name="tokenValid">[B, T] bool, false for padding; default all true.</param>
    public Tensor Forward(Tensor ids, Tensor? positions = null, InferenceCache? cache = null, Tensor? tokenValid = null)
    {
        using var scope = torch.NewDisposeScope();
        var h = ForwardHidden(ids, positions, cache, tokenValid);
        return Head(h).MoveToOuterDisposeScope();
    }

    /// <summary>The output head on final hidden states [.., D] → logits [.., V] (shared with MTP modules).</summary>
    public Tensor Head(Tensor hidden) => lm_head is null
        ? SmallGemm.LinearOrTorch(hidden, model.embed_tokens.weight!)
        : lm_head.forward(hidden);

    /// <summary>Final hidden states [B, T, D] (after model.norm).</summary>
    public Tensor ForwardHidden(Tensor ids, Tensor? positions = null, InferenceCache? cache = null, Tensor? tokenValid = null)
        => ForwardHidden(ids, positions, cache, tokenValid, mask: null, check: true);

    /// <summary>One decode step of <see cref="Generation"/>: logits [B, T, V] with a mask the caller built once for the
    /// whole generation (<paramref name="mask"/> [B, 1, T, S] over the S = cache.Length + T keys) and without the
    /// host-side token/position checks (the caller guarantees ids come from the vocabulary and positions fit the cache).</summary>
    internal Tensor ForwardStep(Tensor ids, Tensor positions, InferenceCache cache, Tensor tokenValid, Tensor mask)
    {
        using var scope = torch.NewDisposeScope();
        var h = ForwardHidden(ids, positions, cache, tokenValid, mask, check: false);
        return Head(h).MoveToOuterDisposeScope();
    }

    Tensor ForwardHidden(Tensor ids, Tensor? positions, InferenceCache? cache, Tensor? tokenValid, Tensor? mask, bool check)
    {
        if (ids.dim() != 2) throw new Runtime.WhaleArgumentException("ids", "shape [" + string.Join(", ", ids.shape) + "]", "must be a [batch, tokens] tensor of token ids");
        using var scope = torch.NewDisposeScope();
        long B = ids.shape[0], T = ids.shape[1];
        long start = cache?.Length ?? 0;
        if (cache is not null && cache.Batch != B) throw new Runtime.WhaleArgumentException("ids batch", B, $"must equal the cache's batch = {cache.Batch}");
        positions ??= (torch.arange(start, start + T, device: ids.device).unsqueeze(0).expand(B, T));
        if (check) CheckTokens(ids, positions);
        tokenValid ??= torch.ones(B, T, dtype: ScalarType.Bool, device: ids.device);
        if (cache is not null)
        {
            cache.MarkNew(tokenValid);
            mask ??= AttentionContext.BuildMask(cache.KeyValid, start, T);
        }
        else mask ??= AttentionContext.BuildMask(tokenValid, 0, T);
        var ctx = new AttentionContext { Positions = positions, Mask = mask, Cache = cache, Rotary = model.rotary_emb.Tables(positions) };
        var h = model.embed_tokens.forward(ids);                                  // [B, T, D]
        foreach (var block in model.layers)
        {
            var next = block.forward(h, ctx);
            h.Dispose();                                                          // free each layer's input as soon as it is used
            h = next;
        }
        cache?.Advance(T);
        return model.norm.forward(h).MoveToOuterDisposeScope();
    }

    /// <summary>Training with multi-token prediction (DeepSeek-V3 eqs. 21–23): the main logits [B, T, V] and, for each
    /// depth k = 1…D, module k's logits [B, T−k, V] at positions 0…T−k−1, which predict token t_{i+k+1}
    /// (the targets shifted by k). One forward of the main model feeds all modules.</summary>
    public (Tensor Logits, Tensor[] MtpLogits) ForwardWithMtp(Tensor ids)
    {
        if (mtp is null) throw new Runtime.WhaleArgumentException("num_nextn_predict_layers", 0, "must be ≥ 1 to train with multi-token prediction");
        long T = ids.dim() == 2 ? ids.shape[1] : 0;
        if (T <= mtp.Count) throw new Runtime.WhaleArgumentException("sequence length", T, $"must exceed num_nextn_predict_layers = {mtp.Count} (module k needs T − k ≥ 1 positions)");
        using var scope = torch.NewDisposeScope();
        var h = ForwardHidden(ids);                                                   // [B, T, D] = h^0
        var logits = Head(h);                                                         // [B, T, V]
        var mtpLogits = new Tensor[mtp.Count];
        var prev = h;
        foreach (var module in mtp)
        {
            int k = module.Depth;
            long len = T - k;
            var ctx = MultiTokenPrediction.Context(ids.shape[0], len, null, ids.device);
            var emb = model.embed_tokens.forward(ids.narrow(1, k, len));               // [B, T−k, D]: Emb(t_{i+k})
            var hk = module.Forward(prev.narrow(1, 0, len), emb, ctx);                // [B, T−k, D]
            mtpLogits[k - 1] = Head(module.HeadInput(hk)).MoveToOuterDisposeScope();  // [B, T−k, V]
            prev = hk;
        }
        return (logits.MoveToOuterDisposeScope(), mtpLogits);
    }

    /// <summary>Allocates the MTP modules' KV cache (one layer per module, all advancing together).</summary>
    public InferenceCache CreateMtpCache(long batch, long capacity)
    {
        if (mtp is null) throw new Runtime.WhaleArgumentException("num_nextn_predict_layers", 0, "must be ≥ 1 for an MTP cache");
        var w = model.embed_tokens.weight!;
        if (capacity > Config.MaxPositionEmbeddings)
            throw new Runtime.WhaleArgumentException("capacity", capacity, $"must be ≤ max_position_embeddings = {Config.MaxPositionEmbeddings}");
        return new InferenceCache(batch, capacity, w.device, j => mtp[j].Block.Attention.CreateCache(batch, capacity, w.dtype, w.device), mtp.Count);
    }

    void CheckTokens(Tensor ids, Tensor positions)
    {
        if (ids.numel() == 0) return;
        long lo = ids.min().item<long>(), hi = ids.max().item<long>();
        if (lo < 0 || hi >= Config.VocabSize)
            throw new Runtime.WhaleArgumentException("token id", lo < 0 ? lo : hi, $"must be in [0, vocab_size = {Config.VocabSize})");
        model.rotary_emb.CheckPositions(positions.max().item<long>());
    }

    /// <summary>Allocates a KV cache for <paramref name="batch"/> sequences of up to <paramref name="capacity"/> tokens
    /// in the model's dtype and device.</summary>
    public InferenceCache CreateCache(long batch, long capacity)
    {
        var w = model.embed_tokens.weight!;
        if (capacity > Config.MaxPositionEmbeddings)
            throw new Runtime.WhaleArgumentException("capacity", capacity, $"must be ≤ max_position_embeddings = {Config.MaxPositionEmbeddings}");
        return new InferenceCache(batch, capacity, w.device, i => model.layers[i].Attention.CreateCache(batch, capacity, w.dtype, w.device), Config.NumHiddenLayers);
    }

    /// <summary>Absorbed MLA attention through libtorch's fused SDPA (true) or explicit matmuls (false), every layer.</summary>
    public void SetMlaSdpa(bool useSdpa)
    {
        foreach (var mla in MlaLayers()) mla.UseSdpa = useSdpa;
    }

    /// <summary>Sets the MLA inference path of every layer (no-op for standard attention).</summary>
    public void SetMlaMode(MlaMode mode)
    {
        foreach (var mla in MlaLayers()) mla.Mode = mode;
    }

    /// <summary>The MLA attention of every decoder block, the MTP modules' blocks included.</summary>
    IEnumerable<MultiHeadLatentAttention> MlaLayers() =>
        model.layers.Select(b => b.Attention).Concat(MtpModules.Select(m => m.Block.Attention)).OfType<MultiHeadLatentAttention>();

    public long ParameterCount() => parameters().Sum(p => p.numel());

    // Checkpoint layout: the Hub's MTP names and its copies of the shared embedding/head (MultiTokenPrediction.cs).
    List<(string Name, Tensor Tensor)> IO.ICheckpointLayout.CheckpointEntries(List<(string Name, Tensor Tensor)> entries, string prefix)
        => MultiTokenPrediction.HubEntries(this, entries, prefix);
    IEnumerable<(string Copy, string Source, Tensor Tensor)> IO.ICheckpointLayout.SharedCopies(string prefix)
        => MultiTokenPrediction.SharedCopies(this, prefix);
}
