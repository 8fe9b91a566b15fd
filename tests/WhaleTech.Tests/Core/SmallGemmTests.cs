// Core/SmallGemm: the small-M kernels agree with a float64 reference within the fp32 dot-product error bound,
// on every shape and view the decode step hands them; they are batch- and thread-count-invariant; and they
// decline (null → libtorch) whatever they do not cover.
using System.Runtime.Intrinsics;
using TorchSharp;
using WhaleTech.Core;
using static TorchSharp.torch;

namespace WhaleTech.Tests.Core;

public class SmallGemmTests
{
    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    /// <summary>|fl(Σ x·w) − Σ x·w| ≤ γ_K Σ|x||w| with γ_K = K·u / (1 − K·u), u = 2⁻²⁴ (Higham, Thm 3.1; FMA only
    /// tightens it). Checked elementwise against float64 products of the same fp32 inputs.</summary>
    static void AssertWithinDotBound(Tensor ours, Tensor exact64, Tensor absProducts64, long K, string what)
    {
        double u = Math.Pow(2, -24), gamma = K * u / (1 - K * u);
        var excess = ((ours.to_type(ScalarType.Float64) - exact64).abs() - absProducts64 * gamma).max().item<double>();
        Assert.True(excess <= 0, $"{what}: error exceeds γ_K·Σ|x||w| by {excess:E2}");
    }

    [Theory]
    [InlineData(1, 37, 64)]
    [InlineData(2, 45, 256)]
    [InlineData(3, 36, 128)]
    [InlineData(4, 41, 2048)]
    [InlineData(7, 8, 576)]
    [InlineData(16, 130, 512)]
    public void LinearMatchesFloat64WithinTheDotProductBound(int M, int N, int K)
    {
        using var scope = NewDisposeScope();
        var g = new torch.Generator((ulong)(M * 1000 + N));
        var x = torch.randn(M, K, generator: g); var w = torch.randn(N, K, generator: g); var b = torch.randn(N, generator: g);
        var y = SmallGemm.LinearKernel(x, w, b);
        Assert.NotNull(y);
        var x64 = x.to_type(ScalarType.Float64); var w64 = w.to_type(ScalarType.Float64);
        var exact = nn.functional.linear(x64, w64, b.to_type(ScalarType.Float64));
        AssertWithinDotBound(y!, exact, nn.functional.linear(x64.abs(), w64.abs()) + b.abs().to_type(ScalarType.Float64), K + 1, "linear");
        // A 3-D input keeps its leading shape.
        var y3 = SmallGemm.LinearKernel(x.view(1, M, K), w);
        Assert.Equal(new long[] { 1, M, N }, y3!.shape);
    }

    [Fact]
    public void BmmCoversTheFourProductsOfAbsorbedDecodeOnTheirViews()
    {
        using var scope = NewDisposeScope();
        var g = new torch.Generator(7);
        var cache = torch.randn(2, 40, 48, generator: g);                    // [B, capacity, Dc+Dr], Dc = 32, Dr = 16
        var kv = cache.narrow(1, 0, 33);                                      // S = 33 of 40 filled
        var q = torch.randn(2, 4, 48, generator: g);                          // [B, H·T, Dc+Dr]
        var probs = torch.randn(2, 4, 33, generator: g);                      // [B, H·T, S]
        var w = torch.randn(4, 24, 32, generator: g);                         // [H, Dn+Dv, Dc], Dn = 8, Dv = 16
        var qh = torch.randn(4, 5, 8, generator: g);                          // [H, B·T, Dn]
        var oh = torch.randn(4, 5, 32, generator: g);                         // [H, B·T, Dc]
        var cases = new (string Name, Tensor A, Tensor B)[]
        {
            ("scores q·kvᵀ (NT, row stride 48)", q, kv.transpose(1, 2)),
            ("values p·latent (NN, row stride 48)", probs, kv.narrow(-1, 0, 32)),
            ("fold q·W_UK (NN, head stride 768)", qh, w.narrow(1, 0, 8)),
            ("unfold o·W_UVᵀ (NT, head stride 768)", oh, w.narrow(1, 8, 16).transpose(1, 2)),
        };
        foreach (var (name, a, b) in cases)
        {
            var y = SmallGemm.BmmKernel(a, b);
            Assert.True(y is not null, name + " was declined");
            var a64 = a.to_type(ScalarType.Float64); var b64 = b.to_type(ScalarType.Float64);
            AssertWithinDotBound(y!, a64.bmm(b64), a64.abs().bmm(b64.abs()), a.shape[2], name);
        }
    }

    [Fact]
    public void EachRowIsTheSameBitsWhateverTheBatchAndTheThreadCount()
    {
        using var scope = NewDisposeScope();
        var g = new torch.Generator(3);
        var x = torch.randn(16, 1024, generator: g); var w = torch.randn(2051, 1024, generator: g);  // 2 M MACs: splits over threads; N % 4 = 3 one-row tail outputs
        try
        {
            SmallGemm.ThreadsOverride = 1;
            var all = SmallGemm.LinearKernel(x, w)!;
            for (int m = 0; m < 16; m += 5)
                Assert.True(Same(SmallGemm.LinearKernel(x.narrow(0, m, 1).contiguous(), w)!, all.narrow(0, m, 1)), $"row {m} alone");
            SmallGemm.ThreadsOverride = 2;
            Assert.True(Same(SmallGemm.LinearKernel(x, w)!, all), "2 threads");
            var c = torch.randn(1, 4096, 512, generator: g); var p = torch.randn(1, 16, 4096, generator: g);
            SmallGemm.ThreadsOverride = 1; var v1 = SmallGemm.BmmKernel(p, c)!;
            for (int m = 0; m < 16; m += 5)                                   // M ≤ 4 (4 × 64 tiles) vs M = 16 (8 × 32 tiles): same bits
                foreach (int batch in new[] { 1, 3 })
                {
                    int first = Math.Min(m, 16 - batch);
                    Assert.True(Same(SmallGemm.BmmKernel(p.narrow(1, first, batch).contiguous(), c)!.narrow(1, m - first, 1), v1.narrow(1, m, 1)), $"NN row {m} in a batch of {batch}");
                }
            var c80 = c.narrow(2, 0, 80);                                     // N % 64 = 16: the few-row stream's columns
            var v80 = SmallGemm.BmmKernel(p, c80)!;
            Assert.True(Same(SmallGemm.BmmKernel(p.narrow(1, 5, 2).contiguous(), c80)!, v80.narrow(1, 5, 2)), "NN, 80 columns, 2 rows");
            foreach (int batch in new[] { 2, 3, 4, 5 })                      // 1-row, partial and full 4×4 tiles: same bits
                for (int m = 0; m < 16; m += 5)
                {
                    int first = Math.Min(m / batch * batch, 16 - batch);
                    Assert.True(Same(SmallGemm.LinearKernel(x.narrow(0, first, batch).contiguous(), w)!.narrow(0, m - first, 1), all.narrow(0, m, 1)), $"row {m} in a batch of {batch}");
                }
            SmallGemm.ThreadsOverride = 2; Assert.True(Same(SmallGemm.BmmKernel(p, c)!, v1), "NN, 2 threads");
        }
        finally { SmallGemm.ThreadsOverride = 0; }
    }

    [Fact]
    public void FewRowStreamsAndTilesGiveTheSameBits()
    {
        using var scope = NewDisposeScope();
        var g = new torch.Generator(11);
        var x = torch.randn(4, 1024, generator: g); var w = torch.randn(2051, 1024, generator: g);   // N % 4 = 3: the tiles' one-row tail
        var c = torch.randn(1, 512, 80, generator: g); var p = torch.randn(1, 4, 512, generator: g); // N % 64 = 16: the tiles' stream tail
        try
        {
            foreach (int M in new[] { 1, 2, 3, 4 })
            {
                var xm = x.narrow(0, 0, M).contiguous(); var pm = p.narrow(1, 0, M).contiguous();
                SmallGemm.FewRowsOverride = SmallGemm.FewRowWalk.Streams;
                var ntStreams = SmallGemm.LinearKernel(xm, w)!; var nnStreams = SmallGemm.BmmKernel(pm, c)!;
                SmallGemm.FewRowsOverride = SmallGemm.FewRowWalk.Tiles;
                Assert.True(Same(SmallGemm.LinearKernel(xm, w)!, ntStreams), $"NT, {M} rows");
                Assert.True(Same(SmallGemm.BmmKernel(pm, c)!, nnStreams), $"NN, {M} rows");
            }
        }
        finally { SmallGemm.FewRowsOverride = null; }
    }

    [Fact]
    public void RowsOfXOnOneL1SetAreCopiedApartWithTheSameBits()
    {
        using var scope = NewDisposeScope();
        var g = new torch.Generator(13);
        var w = torch.randn(1, 37, 1024, generator: g);                      // NT against [37, 1024]ᵀ: 4 KiB rows of x
        var wide = torch.randn(1, 8, 1040, generator: g);                     // the same rows 4,160 B apart: not copied
        var x = wide.narrow(2, 0, 1024).contiguous();                         // 4,096 B apart: copied apart first
        try
        {
            foreach (var walk in new[] { SmallGemm.FewRowWalk.Streams, SmallGemm.FewRowWalk.Tiles })
                foreach (int M in new[] { 2, 3, 4, 8 })
                {
                    SmallGemm.FewRowsOverride = walk;
                    var strided = SmallGemm.BmmKernel(wide.narrow(1, 0, M).narrow(2, 0, 1024), w.transpose(1, 2))!;
                    var copied = SmallGemm.BmmKernel(x.narrow(1, 0, M), w.transpose(1, 2))!;
                    Assert.True(Same(copied, strided), $"{walk}, {M} rows");
                }
        }
        finally { SmallGemm.FewRowsOverride = null; }
    }

    [Fact]
    public void LaneSumsAreVector512SumBitForBit()
    {
        var rng = new Random(5);
        var acc = new Vector512<float>[16];
        for (int trial = 0; trial < 2000; trial++)
        {
            for (int i = 0; i < 16; i++)   // magnitudes 1e-3 … 1e3 of both signs, so that rounding depends on the order
                acc[i] = Vector512.Create(Enumerable.Range(0, 16).Select(_ => (float)((rng.NextDouble() * 2 - 1) * Math.Pow(10, rng.Next(-3, 4)))).ToArray());
            var sums = SmallGemm.LaneSums(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7], acc[8], acc[9], acc[10], acc[11], acc[12], acc[13], acc[14], acc[15]);
            for (int i = 0; i < 16; i++)
                Assert.Equal(BitConverter.SingleToInt32Bits(Vector512.Sum(acc[i])), BitConverter.SingleToInt32Bits(sums.GetElement(i)));
        }
    }

    [Fact]
    public void FewRowsTakeTilesOnlyWhereTheyMeasuredFaster()
    {
        Assert.Equal(SmallGemm.FewRowWalk.Tiles, SmallGemm.FewRowWalkFor("Zen 4"));
        Assert.Equal(SmallGemm.FewRowWalk.Streams, SmallGemm.FewRowWalkFor("Zen 5"));
        Assert.Equal(SmallGemm.FewRowWalk.Streams, SmallGemm.FewRowWalkFor(null));              // a CPU not measured
    }

    [Fact]
    public void WhatTheKernelsDoNotCoverGoesToLibtorch()
    {
        using var scope = NewDisposeScope();
        var w = torch.randn(8, 32);
        Assert.Null(SmallGemm.LinearKernel(torch.randn(17, 32), w));                                     // M > 16
        Assert.Null(SmallGemm.LinearKernel(torch.randn(2, 24), torch.randn(8, 24)));                      // K % 16 ≠ 0
        Assert.Null(SmallGemm.LinearKernel(torch.randn(2, 32, dtype: ScalarType.Float64), w.to_type(ScalarType.Float64)));
        Assert.Null(SmallGemm.LinearKernel(torch.randn(32, 2).t(), w));                                  // x not contiguous
        var wg = w.clone().requires_grad_(true);
        Assert.Null(SmallGemm.LinearKernel(torch.randn(2, 32), wg));                                     // autograd wants it
        using (torch.no_grad()) Assert.NotNull(SmallGemm.LinearKernel(torch.randn(2, 32), wg));          // not under no_grad
        Assert.Null(SmallGemm.BmmKernel(torch.randn(2, 3, 32), torch.randn(2, 32, 24)));                 // NN with N % 16 ≠ 0
        // The public entry points always answer: the kernel's product or libtorch's.
        var x = torch.randn(3, 32);
        Assert.True(SmallGemm.LinearOrTorch(x, w).allclose(nn.functional.linear(x, w), rtol: 1e-5, atol: 1e-5));
    }

    [Fact]
    public void SmallBatchLinearIsNnLinearWithTheSameInitialisationAndGradients()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(11); var reference = nn.Linear(32, 20, hasBias: true);
        torch.manual_seed(11); var lin = new SmallBatchLinear(32, 20, hasBias: true);
        Assert.True(Same(lin.weight, reference.weight!) && Same(lin.bias!, reference.bias!), "same draws as nn.Linear");
        Assert.Equal(new[] { "weight", "bias" }, lin.named_parameters().Select(p => p.name));
        var x = torch.randn(4, 32).requires_grad_(true);
        var y = lin.forward(x);                                                   // training: libtorch's linear, bit for bit
        Assert.True(Same(y, reference.forward(x)));
        y.sum().backward();
        Assert.True(lin.weight.grad is not null && x.grad is not null);
        using (torch.no_grad())                                                   // inference: the kernel (where present), same values
            Assert.True(lin.forward(x).allclose(reference.forward(x), rtol: 1e-5, atol: 1e-5));
    }
}
