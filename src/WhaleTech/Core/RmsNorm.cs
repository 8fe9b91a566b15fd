// RMSNorm (Zhang & Sennrich 2019), as in DeepSeek-V2/V3: y = x / sqrt(mean(x²) + eps) · weight,
// computed in fp32 and cast back. Parameter name `weight` matches HF checkpoints.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Core;

public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly TorchSharp.Modules.Parameter weight;
    private readonly double eps;

    // The scalars as fields, alive as long as the module: a Scalar made inline (`+ eps`) can be finalized while the
    // native call that reads it is still running (TorchSharp passes only its handle), which once showed up as a
    // corrupted Scalar in libtorch ("toFloat at Scalar.h:140") in a notebook run.
    private readonly Scalar _epsScalar;
    private static readonly Scalar Two = 2.ToScalar();

    public RmsNorm(long dim, double eps = 1e-6) : base("RmsNorm")
    {
        this.eps = Runtime.Guard.Positive("rms_norm_eps", eps);
        _epsScalar = eps.ToScalar();
        weight = new TorchSharp.Modules.Parameter(torch.ones(Runtime.Guard.Positive("dim", dim)));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) // x [..., D]
    {
        if (RmsNormKernel.Apply(x, weight, eps) is { } fast) return fast;                   // CPU fp32 inference: one pass
        using var scope = torch.NewDisposeScope();
        bool fp32 = x.dtype == ScalarType.Float32;   // skip the no-op casts (each is a native call)
        var xf = fp32 ? x : x.to_type(ScalarType.Float32);
        var normed = xf * torch.rsqrt(xf.pow(Two).mean([-1], keepdim: true).add(_epsScalar));
        return (fp32 ? normed * weight : normed.to_type(x.dtype) * weight.to_type(x.dtype)).MoveToOuterDisposeScope();
    }
}
