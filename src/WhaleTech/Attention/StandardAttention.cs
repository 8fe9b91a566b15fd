// Standard multi-head attention (Vaswani et al. 2017, eq. 1) with num_key_value_heads covering
// MHA (Hkv = H), GQA (Ainslie et al. 2023, 1 < Hkv < H) and MQA (Shazeer 2019, Hkv = 1), RoPE on the
// whole head, and a preallocated KV cache. The baseline MLA is compared against.
//
//   q_t = W_Q h_t, k_t = W_K h_t, v_t = W_V h_t;  o_t = softmax(q_t k_{≤t}ᵀ / √Dh) v_{≤t};  u_t = W_O o_t
//
// Shapes: B batch, T new tokens, S keys (cached + new), H query heads, Hkv KV heads, G = H/Hkv, Dh head dim.
// KV cache per token per layer: 2 · Hkv · Dh elements.
using TorchSharp;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Attention;

public sealed class StandardAttention : AttentionLayer
{
    private readonly nn.Module<Tensor, Tensor> q_proj, k_proj, v_proj, o_proj;
    private readonly RotaryEmbedding rope;
    private readonly int H, Hkv, Dh;
    private readonly double scale;

    /// <param name="kvHeads">Hkv: H for MHA, num_key_value_heads for GQA, 1 for MQA (StandardAttentionVariant).</param>
    public StandardAttention(ModelConfig cfg, int kvHeads, RotaryEmbedding rope, LinearFactory linear, string prefix) : base("StandardAttention")
    {
        H = cfg.NumAttentionHeads; Hkv = Runtime.Guard.Positive("kvHeads", kvHeads); Dh = cfg.StandardHeadDim;
        if (rope.Dim != Dh) throw new Runtime.WhaleArgumentException("rope dim", rope.Dim, $"must equal the head dim {Dh} for standard attention");
        this.rope = rope;
        scale = 1.0 / Math.Sqrt(Dh);
        q_proj = linear(cfg.HiddenSize, H * Dh, cfg.AttentionBias, prefix + ".q_proj");
        k_proj = linear(cfg.HiddenSize, Hkv * Dh, cfg.AttentionBias, prefix + ".k_proj");
        v_proj = linear(cfg.HiddenSize, Hkv * Dh, cfg.AttentionBias, prefix + ".v_proj");
        o_proj = linear(H * Dh, cfg.HiddenSize, cfg.AttentionBias, prefix + ".o_proj");
        RegisterComponents();
    }

    /// <summary>Per-layer cache: K and V [B, Hkv, C, Dh].</summary>
    public sealed class KvCache : ILayerCache
    {
        public Tensor K { get; }
        public Tensor V { get; }
        public KvCache(long batch, long capacity, long kvHeads, long headDim, ScalarType dtype, Device device)
        {
            K = torch.zeros([batch, kvHeads, capacity, headDim], dtype: dtype, device: device);
            V = torch.zeros([batch, kvHeads, capacity, headDim], dtype: dtype, device: device);
        }
        public long Bytes => (K.NumberOfElements + V.NumberOfElements) * K.ElementSize;
        public void Dispose() { K.Dispose(); V.Dispose(); }
    }

    public override ILayerCache CreateCache(long batch, long capacity, ScalarType dtype, Device device) => new KvCache(batch, capacity, Hkv, Dh, dtype, device);

    public override Tensor forward(Tensor x, AttentionContext ctx) // x [B, T, D]
    {
        using var scope = torch.NewDisposeScope();
        long B = x.shape[0], T = x.shape[1];
        var q = q_proj.forward(x).view(B, T, H, Dh);                             // [B, T, H, Dh]
        var k = k_proj.forward(x).view(B, T, Hkv, Dh);                           // [B, T, Hkv, Dh]
        var v = v_proj.forward(x).view(B, T, Hkv, Dh);
        q = rope.Apply(q, ctx).transpose(1, 2);                        // [B, H, T, Dh]
        k = rope.Apply(k, ctx).transpose(1, 2);                        // [B, Hkv, T, Dh]
        v = v.transpose(1, 2);                                                   // [B, Hkv, T, Dh]
        if (ctx.Cache is { } cache)
        {
            var layer = (KvCache)cache.Layers[LayerIndex];
            long start = ctx.Start, end = start + T;
            layer.K.narrow(2, start, T).copy_(k);
            layer.V.narrow(2, start, T).copy_(v);
            k = layer.K.narrow(2, 0, end);                                         // [B, Hkv, S, Dh]
            v = layer.V.narrow(2, 0, end);
        }
        long G = H / Hkv, S = k.shape[2];
        // The G query heads of a KV group share one K/V: fold them into rows, so each group is one plain
        // matmul [G·T, Dh] × [Dh, S] (no broadcast of K/V over G, which libtorch would materialize).
        var qg = q.reshape(B, Hkv, G * T, Dh);                                   // [B, Hkv, G·T, Dh]
        var scores = torch.matmul(qg, k.transpose(-1, -2)).view(B, Hkv, G, T, S).to_type(ScalarType.Float32) * scale; // [B, Hkv, G, T, S]
        scores = scores + ctx.Mask.unsqueeze(1);                                 // mask [B, 1, 1, T, S]
        var probs = scores.softmax(-1).to_type(v.dtype);                         // fp32 softmax
        var o = torch.matmul(probs.view(B, Hkv, G * T, S), v);                   // [B, Hkv, G·T, Dh]
        o = o.reshape(B, H, T, Dh).transpose(1, 2).reshape(B, T, H * Dh);       // [B, T, H·Dh]
        return o_proj.forward(o).MoveToOuterDisposeScope();                      // [B, T, D]
    }
}
