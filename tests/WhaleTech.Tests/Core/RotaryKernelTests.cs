// Core/RotaryKernel: the one-pass CPU rotation gives the libtorch form's exact bits (products rounded, then the sum),
// on the strided query view and the 3-D key, and declines what it does not cover. Core/RmsNormKernel: the one-pass
// RMSNorm equals the libtorch form within the float32 sum's rounding.
using TorchSharp;
using WhaleTech.Core;
using static TorchSharp.torch;

namespace WhaleTech.Tests.Core;

public class RotaryKernelTests
{
    /// <summary>x·cos + swap(x)·sin, written with libtorch ops (RotaryEmbedding.Rotate's fallback form).</summary>
    static Tensor Reference(Tensor x, Tensor cos, Tensor sin)
    {
        for (long extra = x.dim() - 3; extra > 0; extra--) { cos = cos.unsqueeze(2); sin = sin.unsqueeze(2); }
        var swapped = x.reshape([.. x.shape[..^1], x.shape[^1] / 2, 2]).flip(-1).view(x.shape);
        return (x * cos).add_(swapped.mul_(sin));
    }

    [Fact]
    public void TheOnePassRotationHasTheLibtorchFormsBits()
    {
        using var scope = NewDisposeScope();
        var g = new torch.Generator(5);
        var rope = new RotaryEmbedding(8, 64, 10000, null);
        var positions = torch.tensor(new long[] { 3, 4, 5, 9, 0, 63 }).view(2, 3);
        var t = rope.Tables(positions);                                              // [2, 3, 8]
        var q = torch.randn(2, 3, 4, 12, generator: g).narrow(-1, 4, 8);              // [B, T, H, Dr] view, row stride 12
        var k = torch.randn(2, 3, 8, generator: g);                                   // [B, T, Dr]
        using (torch.no_grad())
        {
            var fq = RotaryKernel.Rotate(q, t.Cos, t.Sin); var fk = RotaryKernel.Rotate(k, t.Cos, t.Sin);
            Assert.NotNull(fq); Assert.NotNull(fk);
            Assert.True(fq!.eq(Reference(q, t.Cos, t.Sin)).all().item<bool>(), "query view");
            Assert.True(fk!.eq(Reference(k, t.Cos, t.Sin)).all().item<bool>(), "key");
            Assert.True(rope.Rotate(q, t.Cos, t.Sin).eq(fq).all().item<bool>(), "Rotate takes the one pass");
        }
        Assert.Null(RotaryKernel.Rotate(k.to_type(ScalarType.Float64), t.Cos, t.Sin));              // fp32 only
        Assert.Null(RotaryKernel.Rotate(k.clone().requires_grad_(true), t.Cos, t.Sin));             // autograd: libtorch's ops
    }

    [Fact]
    public void TheOnePassRmsNormEqualsTheLibtorchFormWithinTheSumsRounding()
    {
        using var scope = NewDisposeScope();
        var g = new torch.Generator(9);
        var x = torch.randn(3, 2, 64, generator: g) * 3; var w = torch.rand(64, generator: g) + 0.5;
        var reference = x * torch.rsqrt(x.pow(2).mean([-1], keepdim: true) + 1e-6) * w;
        using (torch.no_grad())
        {
            var fast = RmsNormKernel.Apply(x, w, 1e-6);
            if (!SmallGemm.Enabled) { Assert.Null(fast); return; }                       // follows the kernels' switch
            // Each form's error against exact: mean(x²) within ≈ D·u relative (squares, sum, division), halved through
            // 1/sqrt, plus ≈ 4u for the add, the root, the reciprocal and the two products; the difference of two such.
            double u = Math.Pow(2, -24), bound = 2 * (64 * u / 2 + 4 * u);
            var rel = ((fast! - reference).abs() / reference.abs().clamp_min(1e-30)).max().item<float>();
            Assert.True(rel <= bound, $"relative difference {rel:E2} > {bound:E2}");
            var norm = new RmsNorm(64, 1e-6);
            norm.get_parameter("weight")!.copy_(w);
            Assert.True(norm.forward(x).allclose(fast!, rtol: 1e-6, atol: 0), "RmsNorm.forward takes the one pass");
        }
        Assert.Null(RmsNormKernel.Apply(x.clone().requires_grad_(true), w, 1e-6));          // autograd: libtorch's ops
    }
}
