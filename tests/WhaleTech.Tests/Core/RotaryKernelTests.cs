// Core/RotaryKernel: the one-pass CPU rotation gives the libtorch form's exact bits (products rounded, then the sum),
// on the strided query view and the 3-D key, and declines what it does not cover.
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
}
