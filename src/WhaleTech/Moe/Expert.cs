// One DeepSeekMoE expert: a SwiGLU feed-forward network (Shazeer 2020, "GLU Variants Improve
// Transformer", eq. 6; DeepSeekMoE 2024 §3.1 uses it for every fine-grained expert).
//
//   Expert(x) = down_proj( silu(gate_proj(x)) * up_proj(x) )
//
// Shapes: N tokens, D hidden_size, F width (moe_intermediate_size, or n_shared × that for the shared
// experts). Parameter names follow Hugging Face DeepSeek-V3: gate_proj.weight [F, D], up_proj.weight
// [F, D], down_proj.weight [D, F].
using TorchSharp;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Moe;

public sealed class Expert : nn.Module<Tensor, Tensor>
{
    public readonly nn.Module<Tensor, Tensor> gate_proj;
    public readonly nn.Module<Tensor, Tensor> up_proj;
    public readonly nn.Module<Tensor, Tensor> down_proj;

    /// <summary>Width F of the hidden layer.</summary>
    public long Width { get; }
    /// <summary>D, the model's hidden size (input and output width).</summary>
    public long Hidden { get; }

    /// <param name="prefix">dotted HF path of this expert, e.g. "model.layers.3.mlp.experts.7".</param>
    public Expert(long hidden, long width, LinearFactory linear, string prefix) : base(nameof(Expert))
    {
        WhaleTech.Runtime.Guard.Positive("hidden_size", hidden);
        WhaleTech.Runtime.Guard.Positive("expert width", width);
        Width = width;
        Hidden = hidden;
        gate_proj = linear(hidden, width, false, prefix + ".gate_proj");
        up_proj = linear(hidden, width, false, prefix + ".up_proj");
        down_proj = linear(width, hidden, false, prefix + ".down_proj");
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)                     // x [N, D]
    {
        using var h = GatedHidden(x);                            // [N, F]
        return down_proj.forward(h);                             // [N, D]
    }

    /// <summary>g · Expert(x) with one combine weight per row, <paramref name="rowWeight"/> [N, 1], applied to the
    /// F-wide hidden before down_proj: down(g · h) = g · down(h) because down_proj is linear, and [N, F] is a
    /// quarter of the [N, D] output at DeepSeek's F = D/4 (fewer bytes to scale in the forward and the backward).</summary>
    public Tensor forward(Tensor x, Tensor rowWeight)           // x [N, D], rowWeight [N, 1]
    {
        using var h = GatedHidden(x);                            // [N, F]
        using var weighted = h * rowWeight;                      // [N, F]
        return down_proj.forward(weighted);                      // [N, D]
    }

    /// <summary>silu(gate_proj x) · up_proj x, [N, F].</summary>
    Tensor GatedHidden(Tensor x)
    {
        using var gate = nn.functional.silu(gate_proj.forward(x)); // [N, F]
        using var up = up_proj.forward(x);                       // [N, F]
        return gate * up;                                        // [N, F]
    }
}
