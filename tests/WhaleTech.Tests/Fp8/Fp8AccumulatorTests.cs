using TorchSharp;
using WhaleTech.Fp8;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Tests.Fp8;

public class Fp8AccumulatorTests
{
    public Fp8AccumulatorTests() => Backend.Initialize();

    [Fact]
    public void Float32AccumulatorMatchesAPlainGemm()
    {
        using var scope = NewDisposeScope();
        var a = Fp8Cast.Round(torch.randn(8, 300, generator: new torch.Generator(1)) * 50, Fp8Format.E4M3);
        var b = Fp8Cast.Round(torch.randn(6, 300, generator: new torch.Generator(2)) * 50, Fp8Format.E4M3);
        var exact = a.to_type(ScalarType.Float64).matmul(b.to_type(ScalarType.Float64).t()).to_type(ScalarType.Float32);
        var full = new Fp8Accumulator(MantissaBits: 23, Rounding: Rounding.NearestEven).Gemm(a, b);
        Assert.True(full.allclose(exact, 1e-5, 1e-3));
        var scaled = new Fp8Accumulator(MantissaBits: 23, Rounding: Rounding.NearestEven).Gemm(a, b, torch.tensor(2f), torch.tensor(0.5f));
        Assert.True(scaled.allclose(full, 0, 0));                                 // scales applied after, exactly
        Assert.Throws<WhaleArgumentException>(() => new Fp8Accumulator().Gemm(a, b.t()));
    }

    [Fact]
    public void FourteenBitAccumulatorErrorGrowsWithKAndPromotionBoundsIt()
    {
        var noPromotion = new Fp8Accumulator(PromotionInterval: 0);
        var promoted = new Fp8Accumulator(PromotionInterval: 128);
        double short0 = noPromotion.RelativeError(128), long0 = noPromotion.RelativeError(2048);
        double long1 = promoted.RelativeError(2048);
        // Truncating to 14 bits loses up to 2^-14 of the running sum per add: the error grows with K …
        Assert.True(long0 > 2 * short0, $"K=128 {short0}, K=2048 {long0}");
        Assert.True(long0 > 1e-4, $"{long0}");
        // … and promotion every 128 elements keeps it at the short-K level.
        Assert.True(long1 < long0 / 4, $"promoted {long1} vs {long0}");
        Assert.True(long1 < 2 * short0 + 1e-6, $"promoted {long1} vs K=128 {short0}");
    }

    [Fact]
    public void GroupScaledGemmAppliesTheScalesAtPromotion()
    {
        using var scope = NewDisposeScope();
        var x = torch.randn(8, 300, generator: new torch.Generator(5)) * torch.logspace(-2, 2, 300).unsqueeze(0);  // ragged K: 3 groups
        var w = torch.randn(130, 300, generator: new torch.Generator(6));                                          // 2 block rows
        using var qa = Fp8Quantizer.Quantize(x, Fp8Format.E4M3, Fp8Granularity.Tile);
        using var qb = Fp8Quantizer.Quantize(w, Fp8Format.E4M3, Fp8Granularity.Block);
        var exact = qa.Dequantize().to_type(ScalarType.Float64).matmul(qb.Dequantize().to_type(ScalarType.Float64).t());   // [8, 130]
        double Rel(Tensor c) => ((c.to_type(ScalarType.Float64) - exact).norm() / exact.norm()).item<double>();
        // A float32 accumulator reproduces the dequantized GEMM up to float32 rounding of K = 300 terms.
        Assert.True(Rel(new Fp8Accumulator(MantissaBits: 23, Rounding: Rounding.NearestEven).GroupScaledGemm(qa, qb)) < 1e-6);
        // 14 truncated bits over 128-element groups, then float32: error of the order of 2^-14 · √128, far below 2%.
        double fourteen = Rel(new Fp8Accumulator().GroupScaledGemm(qa, qb));
        Assert.InRange(fourteen, 1e-7, 1e-3);
        Assert.Throws<WhaleArgumentException>(() => new Fp8Accumulator(PromotionInterval: 64).GroupScaledGemm(qa, qb));
        Assert.Throws<WhaleArgumentException>(() => new Fp8Accumulator().GroupScaledGemm(qb, qa));
    }
}
