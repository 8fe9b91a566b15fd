using TorchSharp;
using WhaleTech.Attention;
using System.Runtime.Intrinsics;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Tests.Attention;

/// <summary>The one-pass absorbed decode attention (Attention/AbsorbedDecodeKernel) against the absorbed equations in
/// float64. RunKernel skips the AVX-512 switch, so this runs on any CPU (.NET emulates Vector512 where it is absent).</summary>
public class AbsorbedDecodeKernelTests
{
    const int H = 4;
    const long Dn = 16, Dr = 16, Dv = 16, Dc = 32;

    /// <summary>o [B, 1, H, Dv] from the equations (fold, scores + mask, softmax, values, unfold), in float64.</summary>
    static Tensor Reference(Tensor qNope, Tensor qRope, Tensor kv, Tensor mask, Tensor kvB, double scale)
    {
        long B = qNope.shape[0], S = kv.shape[1];
        var w = kvB.to_type(ScalarType.Float64).view(H, Dn + Dv, Dc);
        var wUK = w.narrow(1, 0, Dn); var wUV = w.narrow(1, Dn, Dv);                         // [H, Dn, Dc], [H, Dv, Dc]
        var qn = qNope.to_type(ScalarType.Float64).squeeze(1);                               // [B, H, Dn]
        var qLat = torch.einsum("bhn,hnc->bhc", qn, wUK);                                    // [B, H, Dc]
        var q4 = torch.cat([qLat, qRope.to_type(ScalarType.Float64).squeeze(1)], -1);        // [B, H, Dc+Dr]
        var k = kv.to_type(ScalarType.Float64);                                              // [B, S, Dc+Dr]
        var scores = torch.einsum("bhd,bsd->bhs", q4, k) * scale + mask.to_type(ScalarType.Float64).view(mask.shape[0], 1, S);
        var probs = scores.softmax(-1);
        var oLat = torch.einsum("bhs,bsc->bhc", probs, k.narrow(-1, 0, Dc));                 // [B, H, Dc]
        return torch.einsum("bhc,hvc->bhv", oLat, wUV).unsqueeze(1);                         // [B, 1, H, Dv]
    }

    [Theory]
    [InlineData(1, 5, false)]
    [InlineData(3, 37, true)]      // S not a multiple of 16 (the softmax's scalar tail), padded positions masked
    [InlineData(16, 64, false)]    // the largest batch it takes; 16 query rows of x tile the NN/NT kernels fully
    public void EqualsTheAbsorbedEquationsInFloat64(int batch, int context, bool padded)
    {
        Backend.Initialize();
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(batch * 100 + context);
        // q as q_proj produces it ([B, 1, H, Dn+Dr], nope then rope), the cache a narrow of a longer buffer.
        var q = torch.randn(batch, 1, H, Dn + Dr);
        var qNope = q.narrow(-1, 0, Dn);
        var qRope = torch.randn(batch, 1, H, Dr);
        var kv = torch.randn(batch, context + 7, Dc + Dr).narrow(1, 0, context);
        var mask = torch.zeros(batch, 1, 1, context);
        if (padded) mask.narrow(-1, 0, 3).fill_(float.NegativeInfinity);                  // left padding of every row
        var kvB = torch.randn(H * (Dn + Dv), Dc) * 0.2;
        double scale = 1 / Math.Sqrt(Dn + Dr);

        long before = AbsorbedDecodeKernel.Calls;
        var o = AbsorbedDecodeKernel.RunKernel(qNope, qRope, kv, mask, kvB, H, Dn, Dv, scale);
        Assert.NotNull(o);
        Assert.True(AbsorbedDecodeKernel.Calls > before);
        Assert.True(o!.is_contiguous());
        Assert.Equal(new long[] { batch, 1, H, Dv }, o.shape);
        var expected = Reference(qNope, qRope, kv, mask, kvB, scale);
        // float32 products of length ≤ max(Dc + Dr, S) = 64 over O(1)-to-O(10) terms, a float32 softmax: a few 1e-6 at
        // most relative to the outputs' O(1–10) size; 1e-4 absolute leaves an order of magnitude of room.
        double diff = (o.to_type(ScalarType.Float64) - expected).abs().max().item<double>();
        Assert.True(diff <= 1e-4, $"max |kernel − float64 reference| = {diff}");
        // A broadcast mask [1, 1, 1, S] gives the same result as the same row repeated per batch entry.
        var o1 = AbsorbedDecodeKernel.RunKernel(qNope, qRope, kv, mask.narrow(0, 0, 1), kvB, H, Dn, Dv, scale);
        Assert.True(o1!.eq(o).all().item<bool>(), "a broadcast mask differs from the same mask repeated");
    }

    [Fact]
    public void DeclinesWhatItDoesNotHandle()
    {
        Backend.Initialize();
        using var scope = torch.NewDisposeScope();
        var qNope = torch.randn(2, 1, H, Dn); var qRope = torch.randn(2, 1, H, Dr);
        var kv = torch.randn(2, 9, Dc + Dr); var mask = torch.zeros(2, 1, 1, 9); var kvB = torch.randn(H * (Dn + Dv), Dc);
        Tensor? Run(Tensor qn, Tensor qr, Tensor k, Tensor m, Tensor w) => AbsorbedDecodeKernel.RunKernel(qn, qr, k, m, w, H, Dn, Dv, 0.1);
        using (torch.no_grad())
        {
            Assert.NotNull(Run(qNope, qRope, kv, mask, kvB));
            Assert.Null(Run(torch.randn(2, 2, H, Dn), torch.randn(2, 2, H, Dr), kv, torch.zeros(2, 1, 2, 9), kvB));   // T = 2
            Assert.Null(Run(torch.randn(17, 1, H, Dn), torch.randn(17, 1, H, Dr), torch.randn(17, 9, Dc + Dr), torch.zeros(17, 1, 1, 9), kvB)); // B > 16
            Assert.Null(Run(qNope.to_type(ScalarType.Float64), qRope, kv, mask, kvB));
            Assert.Null(Run(qNope, qRope, kv, mask.to_type(ScalarType.Float64), kvB));
            Assert.Null(Run(qNope, qRope, torch.randn(2, Dc + Dr, 9).transpose(1, 2), mask, kvB));              // strided rows
            Assert.Null(Run(qNope, qRope, torch.randn(2, 9, 24 + Dr), mask, torch.randn(H * (Dn + Dv), 24)));   // Dc = 24
        }
        var kvBGrad = kvB.detach().requires_grad_(true);
        Assert.Null(Run(qNope, qRope, kv, mask, kvBGrad));                                                        // autograd
    }

    [Fact]
    public void CacheRowsAreWrittenWhereNarrowCopyWouldWriteThem()
    {
        Backend.Initialize();
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var kv = torch.randn(3, 10, Dc + Dr); var expected = kv.clone();
        var latent = torch.randn(3, 2, Dc); var kRope = torch.randn(3, 2, Dr);
        expected.narrow(-1, 0, Dc).narrow(1, 4, 2).copy_(latent);
        expected.narrow(-1, Dc, Dr).narrow(1, 4, 2).copy_(kRope);
        Assert.True(AbsorbedDecodeKernel.WriteCacheRows(kv, 4, latent, kRope));
        Assert.True(kv.eq(expected).all().item<bool>());
        // Out of range, strided or other dtypes: false and nothing written (the caller's copy_ runs).
        var before = kv.clone();
        Assert.False(AbsorbedDecodeKernel.WriteCacheRows(kv, 9, latent, kRope));
        Assert.False(AbsorbedDecodeKernel.WriteCacheRows(kv, 0, torch.randn(3, Dc, 2).transpose(1, 2), kRope));
        Assert.False(AbsorbedDecodeKernel.WriteCacheRows(kv, 0, latent.to_type(ScalarType.Float64), kRope));
        Assert.True(kv.eq(before).all().item<bool>());
    }
}
