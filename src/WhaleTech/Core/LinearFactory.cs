// Every projection of the model is made through a LinearFactory, so a whole model can be built with
// FP8-simulated linears (Fp8/Fp8Linear) or any other drop-in replacement without touching model code.
// A replacement must register its parameters as `weight` [out, in] (and `bias` [out]) like nn.Linear,
// so Hugging Face weight names keep working.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Core;

/// <summary>Makes one linear layer y = x Wᵀ (+ b). <paramref name="name"/> is its dotted HF path
/// (for example "model.layers.0.self_attn.q_a_proj"), so a factory can keep some layers in high precision.</summary>
public delegate nn.Module<Tensor, Tensor> LinearFactory(long inFeatures, long outFeatures, bool hasBias, string name);

/// <summary>Makes the MoE MLP of a layer: (config, layer index, HF prefix "model.layers.{i}.mlp", linear factory).</summary>
public delegate nn.Module<Tensor, Tensor> MlpFactory(ModelConfig cfg, int layer, string prefix, LinearFactory linear);

public static class Linears
{
    /// <summary>nn.Linear (as <see cref="SmallBatchLinear"/>: small-batch CPU inference through SmallGemm), weights
    /// drawn N(0, initializer_range) like HF DeepSeek.</summary>
    public static LinearFactory Standard(double initStd = 0.02) => (inF, outF, hasBias, _) =>
    {
        var lin = new SmallBatchLinear(inF, outF, hasBias);
        using (torch.no_grad())
        {
            lin.weight!.normal_(0, initStd);
            lin.bias?.zero_();
        }
        return lin;
    };
}
