// One pre-norm decoder block of DeepSeek-V2/V3:
//   h = x + Attention(RMSNorm(x));   y = h + MLP(RMSNorm(h))
// where Attention is MLA or standard (MHA/GQA/MQA) and MLP is dense SwiGLU or DeepSeekMoE
// (layers ≥ first_k_dense_replace when n_routed_experts is set). HF names: self_attn, mlp,
// input_layernorm, post_attention_layernorm.
using TorchSharp;
using WhaleTech.Attention;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Model;

public sealed class DecoderBlock : nn.Module<Tensor, AttentionContext, Tensor>
{
    private readonly AttentionLayer self_attn;
    private readonly nn.Module<Tensor, Tensor> mlp;
    private readonly RmsNorm input_layernorm, post_attention_layernorm;

    public AttentionLayer Attention => self_attn;
    /// <summary>The norm before attention (its output is what q_proj/k_proj/v_proj see).</summary>
    public RmsNorm InputLayerNorm => input_layernorm;
    public nn.Module<Tensor, Tensor> Mlp => mlp;

    public DecoderBlock(ModelConfig cfg, int layer, RotaryEmbedding rope, LinearFactory linear, MlpFactory moe) : base("DecoderBlock")
    {
        string prefix = $"model.layers.{layer}";
        self_attn = cfg.AttentionVariant.Create(cfg, rope, linear, prefix + ".self_attn");
        self_attn.LayerIndex = layer;
        mlp = cfg.IsMoeLayer(layer)
            ? moe(cfg, layer, prefix + ".mlp", linear)
            : new SwiGluMlp(cfg.HiddenSize, cfg.IntermediateSize, linear, prefix + ".mlp");
        input_layernorm = new RmsNorm(cfg.HiddenSize, cfg.RmsNormEps);
        post_attention_layernorm = new RmsNorm(cfg.HiddenSize, cfg.RmsNormEps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, AttentionContext ctx) // x [B, T, D] → [B, T, D]
    {
        using var scope = torch.NewDisposeScope();
        Tensor h;
        using (var attn = torch.NewDisposeScope())   // the norm and attention outputs die here, not at the block's end
            h = (x + self_attn.forward(input_layernorm.forward(x), ctx)).MoveToOuterDisposeScope();
        Tensor y;
        using (var ffn = torch.NewDisposeScope())
            y = (h + mlp.forward(post_attention_layernorm.forward(h))).MoveToOuterDisposeScope();
        h.Dispose();
        return y.MoveToOuterDisposeScope();
    }
}
