using System.Runtime.InteropServices;
using TorchSharp;
using WhaleTech.Fp8;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Lab.Fp8;

namespace WhaleTech.Tests.Fp8;

public class Fp8CastTests
{
    static readonly Fp8Format E4 = Fp8Format.E4M3, E5 = Fp8Format.E5M2;
    const Fp8Overflow Non = Fp8Overflow.NonSaturating, Sat = Fp8Overflow.Saturating;

    public Fp8CastTests() => Backend.Initialize();

    static float P2(int k) => MathF.Pow(2, k);

    [Theory]
    // The must-show edge cases, E4M3.
    [InlineData("e4m3", 464f, 448f, 448f)]                       // tie between 448 and 480 → even mantissa (448)
    [InlineData("e4m3", 465f, float.NaN, 448f)]                   // rounds to 480 > max: NaN, or saturates
    [InlineData("e4m3", -465f, float.NaN, -448f)]
    [InlineData("e4m3", 448f, 448f, 448f)]
    [InlineData("e4m3", 0.0009765625f, 0f, 0f)]                   // 2^-10: tie between 0 and 2^-9 → 0 (even)
    [InlineData("e4m3", 0.00146484375f, 0.001953125f, 0.001953125f)]   // 1.5·2^-10 → 2^-9
    [InlineData("e4m3", 0.0048828125f, 0.00390625f, 0.00390625f)]      // 2.5·2^-9 → 2·2^-9 = 2^-8 (tie to even)
    [InlineData("e4m3", -1e-30f, -0f, -0f)]
    [InlineData("e4m3", float.PositiveInfinity, float.NaN, 448f)]
    [InlineData("e4m3", float.NegativeInfinity, float.NaN, -448f)]
    [InlineData("e4m3", float.NaN, float.NaN, float.NaN)]
    // E5M2.
    [InlineData("e5m2", 7.62939453125e-06f, 0f, 0f)]             // 2^-17: tie between 0 and 2^-16 → 0
    [InlineData("e5m2", 61440f, float.PositiveInfinity, 57344f)] // tie between 57344 and 65536 → odd mantissa loses → inf
    [InlineData("e5m2", -61440f, float.NegativeInfinity, -57344f)]
    [InlineData("e5m2", 57344f, 57344f, 57344f)]
    [InlineData("e5m2", float.PositiveInfinity, float.PositiveInfinity, 57344f)]
    [InlineData("e5m2", float.NegativeInfinity, float.NegativeInfinity, -57344f)]
    [InlineData("e5m2", float.NaN, float.NaN, float.NaN)]
    [InlineData("e5m2", -1e-30f, -0f, -0f)]
    public void EdgeCasesAreExact(string format, float x, float nonSaturating, float saturating)
    {
        var f = Fp8Format.Parse("format", format);
        foreach (var (mode, expected) in new[] { (Non, nonSaturating), (Sat, saturating) })
        {
            float got = Fp8Cast.Round(x, f, mode);
            AssertSameValue(expected, got);
            using var t = torch.tensor(new[] { x });
            using var r = Fp8Cast.Reference(t, f, mode);
            AssertSameValue(expected, r.data<float>()[0]);
        }
    }

    static void AssertSameValue(float expected, float got)
    {
        if (float.IsNaN(expected)) { Assert.True(float.IsNaN(got), $"expected NaN, got {got}"); return; }
        Assert.Equal(expected, got);
        Assert.Equal(float.IsNegative(expected), float.IsNegative(got));    // −0 stays −0
    }

    [Fact]
    public void DecodedCodesAreFixedPointsOfTheCast()
    {
        foreach (var f in new[] { E4, E5 })
        {
            var values = Enumerable.Range(0, 256).Select(b => (float)f.Decode((byte)b)).Where(float.IsFinite).ToArray();
            Assert.Equal(f.HasInfinity ? 256 - 8 : 256 - 2, values.Length);   // E5M2: 2 inf + 6 NaN; E4M3: 2 NaN
            using var t = torch.tensor(values);
            using var r = Fp8Cast.Round(t, f);
            Assert.Equal(values, r.data<float>().ToArray());
            Assert.Equal((float)f.MaxValue, values.Max());
        }
    }

    [Fact]
    public void FormatConstantsFollowFromTheBits()
    {
        Assert.Equal(448.0, E4.MaxValue);
        Assert.Equal(Math.Pow(2, -9), E4.MinSubnormal);
        Assert.Equal(Math.Pow(2, -6), E4.MinNormal);
        Assert.Equal(57344.0, E5.MaxValue);
        Assert.Equal(Math.Pow(2, -16), E5.MinSubnormal);
        Assert.Equal(0x7FF00000u, BitConverter.SingleToUInt32Bits(E4.NaN));
        Assert.Equal(0x7FE00000u, BitConverter.SingleToUInt32Bits(E5.NaN));
        Assert.Throws<WhaleArgumentException>(() => Fp8Format.Parse("--format", "e3m4"));
    }

    /// <summary>Every float32 that is one of the 256 FP8 codes, its neighbours, the midpoints between codes
    /// and their neighbours: all the places where rounding can go wrong.</summary>
    static uint[] EdgePatterns(Fp8Format f)
    {
        var set = new HashSet<uint>();
        {
            var values = Enumerable.Range(0, 256).Select(b => (float)f.Decode((byte)b)).Where(v => !float.IsNaN(v)).Distinct().OrderBy(v => v).ToArray();
            for (int i = 0; i < values.Length; i++)
            {
                var mids = new List<float> { values[i] };
                if (i + 1 < values.Length && !float.IsInfinity(values[i + 1])) mids.Add((values[i] + values[i + 1]) / 2);
                foreach (var v in mids)
                    for (int d = -2; d <= 2; d++) set.Add((uint)((int)BitConverter.SingleToUInt32Bits(v) + d));
            }
        }
        foreach (var s in new uint[] { 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0x00000001, 0x80000001, 0x007FFFFF, 0x7F7FFFFF, 0xFF7FFFFF, 0x80000000 })
            set.Add(s);
        return set.ToArray();
    }

    static void AssertBitExact(float[] xs, Fp8Format f, Fp8Overflow mode)
    {
        using var scope = NewDisposeScope();
        var x = torch.tensor(xs);
        var e = Fp8Cast.Round(x, f, mode).data<float>().ToArray();
        var r = Fp8Cast.Reference(x, f, mode).data<float>().ToArray();
        var eb = MemoryMarshal.Cast<float, uint>(e);
        var rb = MemoryMarshal.Cast<float, uint>(r);
        int bad = 0; string first = "";
        for (int i = 0; i < xs.Length; i++)
            if (eb[i] != rb[i]) { if (bad++ == 0) first = $"{BitConverter.SingleToUInt32Bits(xs[i]):X8}: emulated {eb[i]:X8}, libtorch {rb[i]:X8}"; }
        Assert.True(bad == 0, $"{f} {mode}: {bad} of {xs.Length} differ, first {first}");
    }

    [Fact]
    public void EveryEdgePatternMatchesLibTorchBitForBit()
    {
        foreach (var (f, mode) in Fp8Sweep.Cases)
        {
            var patterns = EdgePatterns(f);
            var xs = patterns.SelectMany(p => new[] { p, p | 0x80000000u }).Select(BitConverter.UInt32BitsToSingle).ToArray();
            AssertBitExact(xs, f, mode);
        }
    }

    [Fact]
    public void MillionsOfRandomFloatsMatchLibTorchBitForBit()
    {
        var rng = new Random(1234);
        // 1M uniformly random bit patterns (every exponent, NaNs, infs) and 1M values around the FP8 range, per case.
        var bits = new float[1 << 20];
        for (int i = 0; i < bits.Length; i++) bits[i] = BitConverter.UInt32BitsToSingle((uint)rng.NextInt64(0, 1L << 32));
        using var g = torch.randn(1 << 20, generator: new torch.Generator(7)) * torch.exp2(torch.randint(-20, 20, 1 << 20, generator: new torch.Generator(8)).to_type(ScalarType.Float32));
        var near = g.data<float>().ToArray();
        foreach (var (f, mode) in Fp8Sweep.Cases)
        {
            AssertBitExact(bits, f, mode);
            AssertBitExact(near, f, mode);
        }
    }

    [Fact]
    public void SweepSubrangeReportsZeroMismatches()
    {
        // The patterns around 448 and 57344 and a stretch of tiny values; the CLI sweeps all 2^32.
        foreach (var start in new long[] { 0x43E00000 - 4096, 0x47600000 - 4096, 0x3A000000, 0xC3E00000 - 4096 })
        {
            var results = Fp8Sweep.Run(start, 1 << 14, torch.CPU, chunk: 1 << 12);
            Assert.All(results, r => { Assert.Equal(1 << 14, r.Checked); Assert.Equal(0, r.Mismatches); });
        }
        Assert.Throws<WhaleArgumentException>(() => Fp8Sweep.Run(Fp8Sweep.AllPatterns - 1, 2, torch.CPU));
    }

    [Fact]
    public void RealFloat8StorageIsOneByteAndExact()
    {
        using var x = torch.randn(64, 128, generator: new torch.Generator(3)) * 10;
        using var codes = Fp8Cast.Round(x, E4);
        using var stored = Fp8Cast.ToStorage(codes, E4);
        Assert.Equal(1, stored.ElementSize);
        using var back = Fp8Cast.FromStorage(stored);
        Assert.True(back.allclose(codes, 0, 0));
    }
}
