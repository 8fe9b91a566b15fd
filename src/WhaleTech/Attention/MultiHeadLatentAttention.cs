// Multi-head latent attention (DeepSeek-V2 §2.1, eqs. 9–19 / Appendix C eqs. 37–47; DeepSeek-V3 §2.1.1
// eqs. 1–11), with HF DeepSeek-V3 parameter names and layouts.
//
//   c_t^Q  = RMSNorm(W^DQ h_t)                       q_a_proj, q_a_layernorm     (or q_proj when q_lora_rank is null, V2-Lite)
//   [q^C; q^R] per head = W^UQ c_t^Q, q^R ← RoPE     q_b_proj, per head [nope | rope]
//   [c_t^KV; k_t^R] = W^DKV h_t, k^R ← RoPE          kv_a_proj_with_mqa → [latent | k_rope]; k^R shared by all heads
//   c_t^KV ← RMSNorm(c_t^KV)                         kv_a_layernorm (on the latent only)
//   [k^C; v^C] per head = W^UKV c_t^KV               kv_b_proj, per head [W_UK | W_UV]
//   o_t,i = Σ_j softmax_j(q_t,i·k_j,i / √(Dn+Dr)) v_j,i ;  u_t = W^O [o_t,1 … o_t,H]   o_proj
//
// Under YaRN the softmax scale is multiplied by mscale² with mscale = 0.1·mscale_all_dim·ln(factor) + 1,
// as DeepSeek's inference/model.py and HF DeepseekV3 do (transformers' DeepseekV2 applies its mscale
// differently: see docs/mla.md).
//
// Two inference paths (DeepSeek's attn_impl):
//   naive     materialize per-head K = [k^C; k^R] and V and cache them: H·(Dn+Dr) + H·Dv elements/token/layer
//   absorbed  cache only c^KV and k^R: Dc + Dr elements/token/layer; fold W_UK into the query
//             (q^C·k^C = (W_UKᵀ q^C)·c^KV) and W_UV into the output (o = W_UV Σ p c^KV). All H heads then
//             share one 576-wide "key" and 512-wide "value": decode is multi-query attention over the latent.
//   auto      latent cache; a step with < AutoCrossover new tokens over earlier cached tokens (decode) absorbs;
//             prefill (no earlier tokens) and long chunks materialize K/V from the latent.
//
// Shapes: B batch, T new tokens, S keys, H heads, Dq q_lora_rank, Dc kv_lora_rank, Dn qk_nope_head_dim,
// Dr qk_rope_head_dim, Dv v_head_dim, D hidden.
using TorchSharp;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Attention;

public enum MlaMode { Naive, Absorbed, Auto }

public sealed class MultiHeadLatentAttention : AttentionLayer
{
    private readonly nn.Module<Tensor, Tensor>? q_proj, q_a_proj, q_b_proj;
    private readonly RmsNorm? q_a_layernorm;
    private readonly nn.Module<Tensor, Tensor> kv_a_proj_with_mqa, kv_b_proj, o_proj;
    private readonly RmsNorm kv_a_layernorm;
    private readonly RotaryEmbedding rope;

    /// <summary>The RoPE table this layer rotates with (a model shares one across layers; AttentionContext.Rotary
    /// carries its tables gathered once per forward).</summary>
    public RotaryEmbedding Rope => rope;
    public int Heads { get; }
    public int NopeDim { get; }
    public int RopeDim { get; }
    public int ValueDim { get; }
    public int LatentDim { get; }
    public double SoftmaxScale { get; }

    /// <summary>ε of q_a_layernorm and kv_a_layernorm: 1e-6 whatever rms_norm_eps says, as DeepSeek's model.py
    /// (RMSNorm(q_lora_rank), RMSNorm(kv_lora_rank)) and transformers' DeepseekV2/V3 build them (docs/hf-interop.md).</summary>
    public const double LatentNormEps = 1e-6;

    /// <summary>Inference path; changeable at any time, but a cache must be created under the mode that uses it.</summary>
    public MlaMode Mode { get; set; } = MlaMode.Auto;
    /// <summary>In auto mode, a step absorbs when it has fewer than this many new tokens AND attends to earlier
    /// cached tokens; otherwise (prefill, training, long chunks) it materializes K/V from the latent. 128 sits just
    /// below the FLOP crossover T* = S·Dc(Dn+Dv)/(S(2Dc−Dn−Dv)+Dc(Dn+Dv)) (146 at S = 1024, → 171 for long S, at
    /// DeepSeek's Dc 512, Dn = Dv 128); with no earlier context (S = T) materializing is always fewer FLOPs.
    /// See DecodeBenchmark.Crossover and docs/mla.md for the CPU measurement.</summary>
    public long AutoCrossover { get; set; } = 128;

    /// <summary>Absorbed attention through libtorch's fused scaled_dot_product_attention (one KV head, explicit scale;
    /// Attention/ScaledDotProductAttention.cs) instead of the explicit matmul–softmax–matmul. Same function.</summary>
    public bool UseSdpa { get; set; }

    public MultiHeadLatentAttention(ModelConfig cfg, RotaryEmbedding rope, LinearFactory linear, string prefix) : base("MultiHeadLatentAttention")
    {
        Heads = cfg.NumAttentionHeads; NopeDim = cfg.QkNopeHeadDim; RopeDim = cfg.QkRopeHeadDim; ValueDim = cfg.VHeadDim; LatentDim = cfg.KvLoraRank;
        if (rope.Dim != RopeDim) throw new Runtime.WhaleArgumentException("qk_rope_head_dim", RopeDim, $"must equal the rotary table's dim {rope.Dim}");
        this.rope = rope;
        long qkHead = NopeDim + RopeDim;
        if (cfg.QLoraRank is int dq)
        {
            q_a_proj = linear(cfg.HiddenSize, dq, cfg.AttentionBias, prefix + ".q_a_proj");
            q_a_layernorm = new RmsNorm(dq, LatentNormEps);
            q_b_proj = linear(dq, Heads * qkHead, false, prefix + ".q_b_proj");
        }
        else q_proj = linear(cfg.HiddenSize, Heads * qkHead, false, prefix + ".q_proj");
        kv_a_proj_with_mqa = linear(cfg.HiddenSize, LatentDim + RopeDim, cfg.AttentionBias, prefix + ".kv_a_proj_with_mqa");
        kv_a_layernorm = new RmsNorm(LatentDim, LatentNormEps);
        kv_b_proj = linear(LatentDim, Heads * (NopeDim + ValueDim), false, prefix + ".kv_b_proj");
        o_proj = linear(Heads * ValueDim, cfg.HiddenSize, cfg.AttentionBias, prefix + ".o_proj");
        double mscale = cfg.RopeScaling is { } rs && rs.MscaleAllDim != 0 ? RotaryEmbedding.YarnMscale(rs.Factor, rs.MscaleAllDim) : 1.0;
        SoftmaxScale = mscale * mscale / Math.Sqrt(qkHead);
        RegisterComponents();
    }

    /// <summary>Naive cache: per-head K [B, H, C, Dn+Dr] and V [B, H, C, Dv].</summary>
    public sealed class MaterializedCache(long batch, long capacity, long heads, long qkDim, long vDim, ScalarType dtype, Device device) : ILayerCache
    {
        public Tensor K { get; } = torch.zeros([batch, heads, capacity, qkDim], dtype: dtype, device: device);
        public Tensor V { get; } = torch.zeros([batch, heads, capacity, vDim], dtype: dtype, device: device);
        public long Bytes => (K.NumberOfElements + V.NumberOfElements) * K.ElementSize;
        public void Dispose() { K.Dispose(); V.Dispose(); }
    }

    /// <summary>Absorbed cache: one tensor KV [B, C, Dc+Dr] holding the normalized latent c^KV and the post-RoPE
    /// k^R side by side (the [latent | k_rope] layout of kv_a_proj_with_mqa), so the absorbed scores are one GEMM
    /// over a (Dc+Dr)-wide key and the values are a strided view of the same rows.</summary>
    public sealed class LatentCache : ILayerCache
    {
        public Tensor KV { get; }      // [B, C, Dc+Dr]
        public Tensor Latent { get; }  // [B, C, Dc] view of KV
        public Tensor KRope { get; }   // [B, C, Dr] view of KV
        public LatentCache(long batch, long capacity, long latentDim, long ropeDim, ScalarType dtype, Device device)
        {
            KV = torch.zeros([batch, capacity, latentDim + ropeDim], dtype: dtype, device: device);
            Latent = KV.narrow(-1, 0, latentDim);
            KRope = KV.narrow(-1, latentDim, ropeDim);
        }
        public long Bytes => KV.NumberOfElements * KV.ElementSize;
        public void Dispose() { Latent.Dispose(); KRope.Dispose(); KV.Dispose(); }
    }

    public override ILayerCache CreateCache(long batch, long capacity, ScalarType dtype, Device device) => Mode == MlaMode.Naive
        ? new MaterializedCache(batch, capacity, Heads, NopeDim + RopeDim, ValueDim, dtype, device)
        : new LatentCache(batch, capacity, LatentDim, RopeDim, dtype, device);

    public override Tensor forward(Tensor x, AttentionContext ctx) // x [B, T, D]
    {
        using var scope = torch.NewDisposeScope();
        long B = x.shape[0], T = x.shape[1];
        // Queries: [B, T, H, Dn] and RoPE'd [B, T, H, Dr]
        var qLatentOrX = q_a_proj is null ? x : q_a_layernorm!.forward(q_a_proj.forward(x));   // [B, T, Dq]
        var q = (q_proj ?? q_b_proj)!.forward(qLatentOrX).view(B, T, Heads, NopeDim + RopeDim);
        var qNope = q.narrow(-1, 0, NopeDim);                                                  // [B, T, H, Dn]
        var qRope = rope.Apply(q.narrow(-1, NopeDim, RopeDim), ctx);                 // [B, T, H, Dr]
        // Compressed KV: latent [B, T, Dc] (normalized) and the shared RoPE key [B, T, Dr]
        var kv = kv_a_proj_with_mqa.forward(x);                                                // [B, T, Dc+Dr]
        var latent = kv_a_layernorm.forward(kv.narrow(-1, 0, LatentDim));
        var kRope = rope.Apply(kv.narrow(-1, LatentDim, RopeDim), ctx);              // [B, T, Dr]

        Tensor o; // [B, T, H, Dv]
        switch (ctx.Cache?.Layers[LayerIndex])
        {
            case MaterializedCache mc:
            {
                var (k, v) = Materialize(latent, kRope);                                       // [B, H, T, Dn+Dr], [B, H, T, Dv]
                long start = ctx.Start, S = start + T;
                mc.K.narrow(2, start, T).copy_(k);
                mc.V.narrow(2, start, T).copy_(v);
                o = AttendMaterialized(qNope, qRope, mc.K.narrow(2, 0, S), mc.V.narrow(2, 0, S), ctx.Mask);
                break;
            }
            case LatentCache lc:
            {
                long start = ctx.Start, S = start + T;
                if (!AbsorbedDecodeKernel.WriteCache(lc.KV, start, latent, kRope))
                {
                    lc.Latent.narrow(1, start, T).copy_(latent);
                    lc.KRope.narrow(1, start, T).copy_(kRope);
                }
                o = Attend(qNope, qRope, lc.KV.narrow(1, 0, S), ctx.Mask, T);                // keys [B, S, Dc+Dr]
                break;
            }
            case null:
                o = Attend(qNope, qRope, torch.cat([latent, kRope], dim: -1), ctx.Mask, T);
                break;
            default:
                throw new InvalidOperationException("MLA got a cache of another attention kind");
        }
        return o_proj.forward(o.reshape(B, T, Heads * ValueDim)).MoveToOuterDisposeScope();  // [B, T, D]
    }

    /// <summary>Attention over the latent keys <paramref name="kv"/> [B, S, Dc+Dr] = [c^KV | k^R].</summary>
    Tensor Attend(Tensor qNope, Tensor qRope, Tensor kv, Tensor mask, long newTokens)
    {
        bool absorb = Mode == MlaMode.Absorbed || (Mode == MlaMode.Auto && newTokens < AutoCrossover && kv.shape[1] > newTokens);
        if (absorb) return AttendAbsorbed(qNope, qRope, kv, mask);
        var (k, v) = Materialize(kv.narrow(-1, 0, LatentDim), kv.narrow(-1, LatentDim, RopeDim));
        return AttendMaterialized(qNope, qRope, k, v, mask);
    }

    /// <summary>K = [W_UK c; k^R] per head [B, H, S, Dn+Dr] and V = W_UV c [B, H, S, Dv] from the latent.</summary>
    (Tensor K, Tensor V) Materialize(Tensor latent, Tensor kRope)
    {
        long B = latent.shape[0], S = latent.shape[1];
        var kv = kv_b_proj.forward(latent).view(B, S, Heads, NopeDim + ValueDim);            // [B, S, H, Dn+Dv]
        var kNope = kv.narrow(-1, 0, NopeDim);
        var v = kv.narrow(-1, NopeDim, ValueDim).transpose(1, 2);                              // [B, H, S, Dv]
        var k = torch.cat([kNope, kRope.unsqueeze(2).expand(B, S, Heads, RopeDim)], dim: -1).transpose(1, 2); // [B, H, S, Dn+Dr]
        return (k, v);
    }

    Tensor AttendMaterialized(Tensor qNope, Tensor qRope, Tensor k, Tensor v, Tensor mask)
    {
        var q = torch.cat([qNope, qRope], dim: -1).transpose(1, 2);                            // [B, H, T, Dn+Dr]
        var scores = torch.matmul(q, k.transpose(-1, -2)).to_type(ScalarType.Float32) * SoftmaxScale + mask; // [B, H, T, S]
        var probs = scores.softmax(-1).to_type(v.dtype);                                       // fp32 softmax
        return torch.matmul(probs, v).transpose(1, 2);                                         // [B, T, H, Dv]
    }

    /// <summary><paramref name="t"/> in <paramref name="dtype"/>; the same tensor (no native call) when it already is
    /// (the cast of an unchanged dtype still costs a call per op, and decode is op-bound at small sizes).</summary>
    static Tensor As(Tensor t, ScalarType dtype) => t.dtype == dtype ? t : t.to_type(dtype);

    /// <summary>Absorbed attention (DeepSeek-V2 §2.1.2, "absorb W^UK into W^UQ and W^UV into W^O"): all heads attend
    /// over the shared latent — multi-query attention with a (Dc+Dr)-wide key [c^KV | k^R] and a Dc-wide value c^KV.
    /// The fold (q^C through W_UK) and the unfold (W_UV after the attention) run with the HEADS as the batch
    /// dimension: one [B·T, ·] × [·, ·] GEMM per head, reading each head's weight once whatever the batch
    /// (torch.matmul of [B, H, T, ·] by [H, ·, ·] would expand the weights B times and run B·H tiny products).
    /// The H·T query rows of a sequence then form one GEMM against its S cached rows, which are read once for the
    /// scores and once (a strided view) for the values.</summary>
    Tensor AttendAbsorbed(Tensor qNope, Tensor qRope, Tensor kv, Tensor mask)
    {
        long B = qNope.shape[0], T = qNope.shape[1], S = kv.shape[1], H = Heads;
        var kvB = kv_b_proj.get_parameter("weight")!;                                          // [H·(Dn+Dv), Dc]
        // A decode step on an AVX-512 CPU: the same four products with scale, mask and softmax between them, in one pass.
        if (!UseSdpa && T == 1 && AbsorbedDecodeKernel.Run(qNope, qRope, kv, mask, kvB, Heads, NopeDim, ValueDim, SoftmaxScale) is { } fused)
            return fused;                                                                      // [B, 1, H, Dv]
        var w = kvB.view(Heads, NopeDim + ValueDim, LatentDim);                               // [H, Dn+Dv, Dc]
        var wUK = As(w.narrow(1, 0, NopeDim), qNope.dtype);                                    // [H, Dn, Dc]
        var wUV = As(w.narrow(1, NopeDim, ValueDim), qNope.dtype);                             // [H, Dv, Dc]
        Tensor qLat;                                                                           // [B, H, T, Dc]
        using (var qh = qNope.permute(2, 0, 1, 3).reshape(H, B * T, NopeDim))                  // [H, B·T, Dn]
        using (var folded = SmallGemm.BmmOrTorch(qh, wUK))                                     // [H, B·T, Dc]: q^C folded through W_UK
            qLat = folded.view(H, B, T, LatentDim).permute(1, 0, 2, 3);                        // [B, H, T, Dc] (a view)
        Tensor oLat;                                                                           // [B, H, T, Dc]
        if (UseSdpa)
        {
            using var q4 = torch.cat([qLat, qRope.transpose(1, 2)], dim: -1);                  // [B, H, T, Dc+Dr]
            using var latentOnly = kv.narrow(-1, 0, LatentDim).unsqueeze(1);                    // [B, 1, S, Dc]: the values
            using var allowed = mask.eq(0);
            using var kv4 = kv.unsqueeze(1);
            oLat = ScaledDotProductAttention.Apply(q4, kv4, latentOnly, allowed, SoftmaxScale); // [B, H, T, Dc]
        }
        else
        {
            using var q = torch.cat([qLat, qRope.transpose(1, 2)], dim: -1).view(B, H * T, LatentDim + RopeDim); // [B, H·T, Dc+Dr]
            var scores = As(SmallGemm.BmmOrTorch(q, kv.transpose(1, 2)), ScalarType.Float32);  // [B, H·T, S]: one GEMM (the MQA view), fp32
            scores.view(B, H, T, S).mul_(SoftmaxScale).add_(mask);                             // [B, H, T, S], in place
            var probs = As(scores.softmax(-1), kv.dtype);                                      // [B, H·T, S]
            scores.Dispose();
            using var latent = kv.narrow(-1, 0, LatentDim);                                    // [B, S, Dc] strided view
            oLat = SmallGemm.BmmOrTorch(probs, latent).view(B, H, T, LatentDim);              // [B, H, T, Dc]
            probs.Dispose();
        }
        qLat.Dispose();
        using var oh = oLat.permute(1, 0, 2, 3).reshape(H, B * T, LatentDim);                  // [H, B·T, Dc]
        oLat.Dispose();
        using var unfolded = SmallGemm.BmmOrTorch(oh, wUV.transpose(1, 2));                    // [H, B·T, Dv]: W_UV after
        return unfolded.view(H, B, T, ValueDim).permute(1, 2, 0, 3);                           // [B, T, H, Dv]
    }
}
