// The dense feed-forward of DeepSeek (and LLaMA): SwiGLU (Shazeer 2020, eq. 6),
//   FFN(x) = W_down · (SiLU(W_gate · x) ⊙ (W_up · x)),
// with HF names gate_proj / up_proj / down_proj. Shapes: x [..., D] → [..., F] → [..., D].
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Core;

public sealed class SwiGluMlp : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> gate_proj, up_proj, down_proj;

    public SwiGluMlp(long hidden, long intermediate, LinearFactory linear, string prefix) : base("SwiGluMlp")
    {
        gate_proj = linear(hidden, intermediate, false, prefix + ".gate_proj");
        up_proj = linear(hidden, intermediate, false, prefix + ".up_proj");
        down_proj = linear(intermediate, hidden, false, prefix + ".down_proj");
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return down_proj.forward(nn.functional.silu(gate_proj.forward(x)) * up_proj.forward(x)).MoveToOuterDisposeScope();
    }
}
