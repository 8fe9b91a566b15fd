// nn.Linear (y = x Wᵀ + b, parameters `weight` [out, in] and `bias` [out], the Hugging Face names) whose
// small-batch CPU inference runs Core/SmallGemm: a decode step's linears see M = batch × 1 rows, where libtorch's
// BLAS is slowest. Training and every other shape run nn.functional.linear, the same call nn.Linear makes, so
// gradients and large-batch numbers are nn.Linear's. Built from an nn.Linear, so initialisation draws the same
// random numbers as nn.Linear (seeded runs keep their weights).
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Core;

public sealed class SmallBatchLinear : nn.Module<Tensor, Tensor>
{
    public readonly TorchSharp.Modules.Parameter weight;        // [out, in]
    public readonly TorchSharp.Modules.Parameter? bias;         // [out]

    public SmallBatchLinear(long inFeatures, long outFeatures, bool hasBias) : base(nameof(SmallBatchLinear))
    {
        using (var reference = nn.Linear(inFeatures, outFeatures, hasBias))   // nn.Linear's own initialisation
        {
            weight = new TorchSharp.Modules.Parameter(reference.weight!.detach().clone());
            bias = reference.bias is null ? null : new TorchSharp.Modules.Parameter(reference.bias.detach().clone());
        }
        RegisterComponents();
    }

    public long InFeatures => weight.shape[1];
    public long OutFeatures => weight.shape[0];

    public override Tensor forward(Tensor x) => SmallGemm.LinearOrTorch(x, weight, bias);
}
