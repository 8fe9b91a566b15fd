using TorchSharp;
using WhaleTech.Fp8;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Lab.Fp8;

namespace WhaleTech.Tests.Fp8;

public class Fp8QuantizerTests
{
    public Fp8QuantizerTests() => Backend.Initialize();

    static readonly Fp8Granularity[] All = [Fp8Granularity.PerTensor, Fp8Granularity.PerRow, Fp8Granularity.Tile, Fp8Granularity.Block];

    [Theory]
    [InlineData("tensor", new long[0])]
    [InlineData("row", new long[] { 200, 1 })]
    [InlineData("tile", new long[] { 200, 3 })]
    [InlineData("block", new long[] { 2, 3 })]
    public void ScalesHaveTheDocumentedShapesAndMapAmaxOntoMax(string key, long[] scaleShape)
    {
        var g = Fp8Granularities.Get(key);
        using var scope = NewDisposeScope();
        var x = torch.randn(200, 300, generator: new torch.Generator(1)) * 3;    // ragged: 300 = 2·128 + 44
        using var q = Fp8Quantizer.Quantize(x, Fp8Format.E4M3, g);
        Assert.Equal(scaleShape, q.Scales.shape);
        Assert.Equal(x.shape, q.Codes.shape);
        // Every group's largest |code| is exactly 448 (amax/scale rounds to max).
        var codeAmax = Fp8Quantizer.Amax(q.Codes, g);
        Assert.True(codeAmax.allclose(torch.full_like(codeAmax, 448f), 0, 0));
        // Codes are FP8 values (fixed points of the cast) and dequantization is accurate to E4M3's half-ulp.
        Assert.True(Fp8Cast.Round(q.Codes, Fp8Format.E4M3).allclose(q.Codes, 0, 0));
        var err = (q.Dequantize() - x).abs();
        var bound = Fp8Quantizer.ApplyScales(torch.ones_like(x), q.Scales, g, 128, divide: false) * (16 * 1.0001);   // half the spacing (32) of the top binade [256, 448]
        Assert.True((err <= bound).all().item<bool>());
    }

    [Theory]
    [InlineData(Fp8Overflow.Saturating)]
    [InlineData(Fp8Overflow.NonSaturating)]
    public void NativeAndEmulatedCastsGiveTheSameBits(Fp8Overflow overflow)
    {
        // Training uses libtorch's float8 cast (Native) for speed; the emulation is the readable model. They must agree
        // bit for bit, specials and stale (delayed) scales that overflow included.
        using var scope = NewDisposeScope();
        var x = torch.randn(64, 300, generator: new torch.Generator(7)) * torch.logspace(-12, 12, 300).unsqueeze(0);
        x[0, 0] = float.NaN; x[0, 1] = float.PositiveInfinity; x[0, 2] = float.NegativeInfinity; x[0, 3] = -1e-30f; x[0, 4] = 465f;
        foreach (var format in new[] { Fp8Format.E4M3, Fp8Format.E5M2 })
        {
            var emulated = Fp8Cast.Round(x, format, overflow, Fp8CastImplementation.Emulated);
            var native = Fp8Cast.Round(x, format, overflow, Fp8CastImplementation.Native);
            Assert.True(SameBits(emulated, native), $"{format.Name} {overflow}");
            foreach (var g in All)
            {
                var scaling = Fp8Scaling.Default with { Overflow = overflow };
                var finite = x.nan_to_num(0, 0, 0);
                using var a = Fp8Quantizer.Quantize(finite, format, g, scaling with { Cast = Fp8CastImplementation.Emulated });
                using var b = Fp8Quantizer.Quantize(finite, format, g, scaling with { Cast = Fp8CastImplementation.Native });
                Assert.True(SameBits(a.Codes, b.Codes), $"{format.Name} {g} {overflow}");
            }
        }
    }

    static bool SameBits(Tensor a, Tensor b) =>
        a.data<float>().ToArray().Select(BitConverter.SingleToInt32Bits).SequenceEqual(b.data<float>().ToArray().Select(BitConverter.SingleToInt32Bits));

    [Fact]
    public void FinerGranularityIsNeverWorseOnOutlierChannels()
    {
        using var scope = NewDisposeScope();
        var x = torch.randn(256, 512, generator: new torch.Generator(2));
        x[.., 5] *= 1e4;
        var sqnr = All.Select(g => Fp8Lab.Sqnr(x, Fp8Quantizer.FakeQuantize(x, Fp8Format.E4M3, g))).ToArray();
        Assert.True(sqnr[2] > sqnr[0] + 10, string.Join(", ", sqnr));     // 1×128 tiles ≫ per tensor
        Assert.True(sqnr[1] > sqnr[0] + 10, string.Join(", ", sqnr));
    }

    [Fact]
    public void PowerOfTwoScalesRoundUpSoNothingOverflows()
    {
        using var scope = NewDisposeScope();
        var amax = torch.tensor(new float[] { 448f, 449f, 1000f, 1f, 0f });
        var s = Fp8Quantizer.ScaleFromAmax(amax, Fp8Format.E4M3, new Fp8Scaling(PowerOfTwo: true)).data<float>().ToArray();
        Assert.Equal(new[] { 1f, 2f, 4f, 0.00390625f }, s[..4]);                 // 1000/448 = 2.23 → 4; 1/448 → 2^-8
        Assert.True(s[4] > 0 && float.IsFinite(s[4]));                           // amax floor: all-zero group
        var x = torch.randn(64, 256, generator: new torch.Generator(3)) * 37;
        using var q = Fp8Quantizer.Quantize(x, Fp8Format.E4M3, Fp8Granularity.Tile, new Fp8Scaling(PowerOfTwo: true, Overflow: Fp8Overflow.NonSaturating));
        Assert.False(q.Codes.isnan().any().item<bool>());
        var sc = q.Scales.data<float>().ToArray();
        Assert.All(sc, v => Assert.Equal(0u, BitConverter.SingleToUInt32Bits(v) & 0x7FFFFF));   // mantissa bits zero
    }

    [Fact]
    public void AllZeroTensorsQuantizeToZeroWithoutNaN()
    {
        using var scope = NewDisposeScope();
        var x = torch.zeros(3, 130);
        foreach (var g in All)
        {
            using var q = Fp8Quantizer.Quantize(x, Fp8Format.E5M2, g);
            Assert.True(q.Dequantize().eq(0).all().item<bool>());
        }
        Assert.Throws<WhaleArgumentException>(() => Fp8Quantizer.Quantize(x, Fp8Format.E4M3, Fp8Granularity.Tile, new Fp8Scaling(TileSize: 0)));
    }

    [Fact]
    public void DelayedScalingUsesThePastAndSaturatesOnASpike()
    {
        using var scope = NewDisposeScope();
        var ds = new DelayedScaling(historyLength: 3);
        var x = torch.randn(1000, generator: new torch.Generator(4));
        double amax = x.abs().max().item<float>();
        using (var q0 = ds.Quantize(x, Fp8Format.E4M3))                                // empty history: own amax
            Assert.Equal(amax / 448, q0.Scales.item<float>(), 1e-6);
        using (var q1 = ds.Quantize(x * 10, Fp8Format.E4M3))                           // spike: stale scale saturates
        {
            Assert.Equal(amax / 448, q1.Scales.item<float>(), 1e-6);
            Assert.Equal(448f, q1.Codes.abs().max().item<float>());
            Assert.True(q1.Codes.abs().eq(448).sum().item<long>() > 10);
        }
        for (int i = 0; i < 3; i++) ds.Record(1.0);                                    // spike leaves the history
        Assert.Equal(1.0 / 448, ds.Scale(Fp8Format.E4M3, 123), 1e-12);
        Assert.Equal(3, ds.History.Count);
    }
}
