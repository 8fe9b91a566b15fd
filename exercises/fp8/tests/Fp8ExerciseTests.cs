// Tests of the FP8 exercises: hand-computed values, and agreement with WhaleTech's own implementation
// (src/WhaleTech/Fp8: Fp8Format.Decode, Fp8Cast.Round/Reference, Fp8Quantizer.Quantize, Fp8Accumulator.Gemm).
// Casts and the accumulator are compared BIT FOR BIT: they are exact integer-like operations on the float grid,
// so there is no tolerance to derive. Only dequantized values (one fp32 multiply) get one.
using TorchSharp;
using WhaleTech.Fp8;
using static TorchSharp.torch;

namespace WhaleTech.Exercises.Fp8;

public class Fp8ExerciseTests
{
    static float P2(int k) => MathF.Pow(2, k);

    [Fact]
    public void Exercise1_DecodeE4M3()
    {
        var ours = Enumerable.Range(0, 256).Select(c => Fp8Exercises.DecodeE4M3((byte)c)).ToArray();
        Assert.Equal(1.0, ours[0x38]);
        Assert.Equal(448.0, ours[0x7E]);
        Assert.Equal(-448.0, ours[0xFE]);
        Assert.Equal(Math.Pow(2, -9), ours[0x01]);                  // smallest subnormal
        Assert.Equal(Math.Pow(2, -6), ours[0x08]);                  // smallest normal
        Assert.Equal(0.875 * Math.Pow(2, -6), ours[0x07]);          // largest subnormal 7/8 · 2^-6
        Assert.True(double.IsNegative(ours[0x80]) && ours[0x80] == 0);
        Assert.True(double.IsNaN(ours[0x7F]) && double.IsNaN(ours[0xFF]));
        for (int c = 0; c < 256; c++)                                // all 256 codes vs the library
        {
            double lib = Fp8Format.E4M3.Decode((byte)c);
            Assert.True(double.IsNaN(lib) ? double.IsNaN(ours[c]) : lib == ours[c], $"code 0x{c:X2}: {ours[c]} vs {lib}");
        }
    }

    [Theory]
    [InlineData(464f, 448f)]                  // tie between 448 (1.110₂·2^8) and 480 → even mantissa
    [InlineData(465f, 448f)]                  // would round to 480 > max: saturates
    [InlineData(-1000f, -448f)]
    [InlineData(float.PositiveInfinity, 448f)]
    [InlineData(float.NegativeInfinity, -448f)]
    [InlineData(0.0009765625f, 0f)]           // 2^-10: tie between 0 and 2^-9 → 0 (even)
    [InlineData(0.00146484375f, 0.001953125f)] // 1.5·2^-10 → 2^-9
    [InlineData(0.0048828125f, 0.00390625f)]  // 2.5·2^-9 → 2^-8 (tie to even)
    [InlineData(1.0625f, 1f)]                 // 1 + 1/16: tie between 1 and 1.125 → 1
    [InlineData(1.1875f, 1.25f)]              // 1 + 3/16: tie between 1.125 and 1.25 → 1.25 (even)
    [InlineData(17f, 16f)]                    // spacing 2 in [16, 32): tie → 16
    [InlineData(19f, 20f)]                    // tie between 18 (1.001₂·16) and 20 (1.010₂·16) → 20
    public void Exercise2_RoundE4M3_HandComputed(float x, float expected)
        => AssertSameBits(expected, Fp8Exercises.RoundE4M3(x));

    [Fact]
    public void Exercise2_RoundE4M3_MatchesTheLibraryBitForBit()
    {
        var nan = Fp8Exercises.RoundE4M3(float.NaN);
        Assert.True(float.IsNaN(nan));
        AssertSameBits(-0f, Fp8Exercises.RoundE4M3(-1e-30f));
        var xs = new List<float> { 0f, -0f, 448f, -448f, 449f, 480f, 1e-45f, -1e-40f, float.MaxValue, float.MinValue };
        // every code, every midpoint between neighbouring codes (the ties) and one float32 ulp either side
        var grid = Enumerable.Range(0, 0x7F).Select(c => (float)Fp8Format.E4M3.Decode((byte)c)).Append(480f).ToArray();
        for (int i = 0; i + 1 < grid.Length; i++)
        {
            float mid = (grid[i] + grid[i + 1]) / 2;                 // exact in float32
            xs.AddRange([grid[i], mid, MathF.BitDecrement(mid), MathF.BitIncrement(mid)]);
        }
        var random = new Random(8);                                  // log-uniform magnitudes 2^-14 … 2^10, both signs
        for (int i = 0; i < 4000; i++)
            xs.Add((float)((random.Next(2) * 2 - 1) * Math.Pow(2, random.NextDouble() * 24 - 14)));
        xs.AddRange(xs.Select(v => -v).ToList());
        var x = xs.ToArray();
        using var t = torch.tensor(x);
        using var lib = Fp8Cast.Round(t, Fp8Format.E4M3, Fp8Overflow.Saturating);        // emulated
        using var native = Fp8Cast.Reference(t, Fp8Format.E4M3, Fp8Overflow.Saturating);  // libtorch's float8
        var ours = x.Select(Fp8Exercises.RoundE4M3).ToArray();
        var l = lib.data<float>().ToArray();
        var n = native.data<float>().ToArray();
        for (int i = 0; i < x.Length; i++)
        {
            AssertSameBits(l[i], ours[i], $"x = {x[i]:R}");
            AssertSameBits(n[i], ours[i], $"x = {x[i]:R} (libtorch)");
        }
    }

    [Fact]
    public void Exercise3_QuantizeTilesHandComputed()
    {
        // One 1×4 tile [1, 3, 0, 0.1]: amax 3, scale 3/448; x/scale = [149.3, 448, 0, 14.93]
        // → E4M3 [144 (spacing 16 in [128, 256)), 448, 0, 15 (spacing 1 in [8, 16))].
        using var x = torch.tensor(new float[] { 1, 3, 0, 0.1f }, [1, 4]);
        var (codes, scales) = Fp8Exercises.Quantize(x, 1, 4);
        Assert.Equal(new float[] { 144, 448, 0, 15 }, codes.data<float>().ToArray());
        Assert.Equal(3f / 448f, scales.item<float>());
        // an all-zero tile gets the floor scale 1e-12/448 and zero codes (no NaN)
        var (zc, zs) = Fp8Exercises.Quantize(torch.zeros(1, 4), 1, 4);
        Assert.Equal((float)(1e-12 / 448), zs.item<float>(), 1e-20f);
        Assert.Equal(0, zc.abs().sum().item<float>());
    }

    [Theory]
    [InlineData(4, 16, 1, 4, "Tile")]        // 1×4 tiles
    [InlineData(8, 12, 4, 4, "Block")]       // 4×4 blocks
    [InlineData(2, 256, 1, 128, "Tile")]     // DeepSeek-V3 activations: 1×128
    [InlineData(128, 256, 128, 128, "Block")] // DeepSeek-V3 weights: 128×128
    public void Exercise3_QuantizeMatchesFp8Quantizer(int rows, int cols, int br, int bc, string granularity)
    {
        var g = new torch.Generator(3);
        using var x = torch.randn(rows, cols, generator: g) * torch.exp(2 * torch.randn(rows, cols, generator: g)); // wide dynamic range
        var (codes, scales) = Fp8Exercises.Quantize(x, br, bc);
        using var deq = Fp8Exercises.Dequantize(codes, scales, br, bc);
        using var lib = Fp8Quantizer.Quantize(x, Fp8Format.E4M3, Fp8Granularities.Get(granularity.ToLowerInvariant()), new Fp8Scaling(TileSize: bc));
        Assert.Equal(lib.Scales.shape, scales.shape);
        Assert.True(Same(scales, lib.Scales), "scales = amax / 448, fp32");
        Assert.True(Same(codes, lib.Codes), "codes = E4M3(x / scale)");
        using var libDeq = lib.Dequantize();
        Assert.True(Same(deq, libDeq), "codes · scale");
        // Error bound of the round trip, in code units y = fl(x/s): RNE onto E4M3 moves y by ≤ 2^-4·|y| (half the
        // 3-bit mantissa step) for normal codes and by ≤ 2^-10 (half the subnormal step 2^-9) below 2^-6; times s,
        // plus one fp32 rounding (u = 2^-24 relative) each for x/s and codes·s:
        //   |deq − x| ≤ max(2^-4·|x|, 2^-10·s)·(1 + u) + 3u·|x|        (computed in float64)
        using var s = scales.repeat_interleave(br, 0).repeat_interleave(bc, 1).to_type(ScalarType.Float64); // [R, C]
        using var ax = x.abs().to_type(ScalarType.Float64);
        double u = Math.Pow(2, -24);
        using var bound = torch.maximum(ax * Math.Pow(2, -4), s * Math.Pow(2, -10)) * (1 + u) + 3 * u * ax;
        Assert.True((deq.to_type(ScalarType.Float64) - x.to_type(ScalarType.Float64)).abs().le(bound).all().item<bool>());
    }

    [Theory]
    [InlineData(1.96875f, 4, 1.9375f)]       // 1.11111₂ → 1.1111₂
    [InlineData(-1.96875f, 4, -1.9375f)]     // toward zero, not down
    [InlineData(1.03125f, 4, 1f)]            // 1 + 2^-5: the dropped bit
    [InlineData(1.9375f, 4, 1.9375f)]        // already on the grid
    [InlineData(16.5f, 4, 16f)]              // spacing 1 in [16, 32)
    [InlineData(1.00006103515625f, 14, 1.00006103515625f)] // 1 + 2^-14 survives 14 bits
    [InlineData(1.000030517578125f, 14, 1f)]               // 1 + 2^-15 does not
    public void Exercise4_TruncateMantissa_HandComputed(float x, int bits, float expected)
        => AssertSameBits(expected, Fp8Exercises.TruncateMantissa(x, bits));

    [Fact]
    public void Exercise4_TruncateMantissa_MatchesRoundToGrid()
    {
        var random = new Random(4);
        // magnitudes 2^-100 … 2^30, both signs. (Not lower: RoundToGrid scales by 2^(p − e), which overflows float32
        // for e < p − 127 — irrelevant to FP8 GEMM sums, which are 0 or ≥ 2^-18 — so float32 subnormals are
        // checked by hand below instead.)
        var x = Enumerable.Range(0, 3000).Select(i => (float)((random.Next(2) * 2 - 1) * Math.Pow(2, random.NextDouble() * 130 - 100))).ToArray();
        using var t = torch.tensor(x);
        foreach (int p in new[] { 3, 10, 14, 23 })
        {
            var ours = x.Select(v => Fp8Exercises.TruncateMantissa(v, p)).ToArray();
            using var lib = Fp8Cast.RoundToGrid(t, p, -126, Rounding.TowardZero);
            var l = lib.data<float>().ToArray();
            for (int j = 0; j < x.Length; j++) AssertSameBits(l[j], ours[j], $"x = {x[j]:R}, p = {p}");
        }
    }

    [Fact]
    public void Exercise4_TruncateMantissa_Subnormals()
    {
        // float32 subnormals are m·2^-149. Keeping p fraction bits "below 2^-126" means a spacing of 2^(-126-p):
        // 2^-140 + 2^-149 (bits 0x201) with p = 14 → 2^-140 (bits 0x200); with p = 23 it is already exact.
        float x = BitConverter.UInt32BitsToSingle(0x201), y = BitConverter.UInt32BitsToSingle(0x200);
        AssertSameBits(y, Fp8Exercises.TruncateMantissa(x, 14));
        AssertSameBits(-y, Fp8Exercises.TruncateMantissa(-x, 14));
        AssertSameBits(x, Fp8Exercises.TruncateMantissa(x, 23));
        AssertSameBits(0f, Fp8Exercises.TruncateMantissa(BitConverter.UInt32BitsToSingle(0x1FF), 14)); // < 2^-140 → 0
    }

    [Theory]
    [InlineData(0, 16f)]      // never promoted: every ½ falls below the spacing 1 of [16, 32)
    [InlineData(2, 17.5f)]    // [16, ½] → 16 promoted; [½, ½] → 1 promoted; ½ left
    [InlineData(1, 18f)]      // promoted every element: exact
    public void Exercise5_PromotedDot_HandComputed(int interval, float expected)
        => Assert.Equal(expected, Fp8Exercises.PromotedDot([16, 0.5f, 0.5f, 0.5f, 0.5f], [1, 1, 1, 1, 1], 4, interval));

    [Theory]
    [InlineData(14, 128)]     // DeepSeek-V3: ~14 bits, N_C = 128
    [InlineData(14, 0)]       // the H800 alone
    [InlineData(8, 32)]
    [InlineData(23, 128)]     // a float32 accumulator
    public void Exercise5_PromotedDot_MatchesFp8Accumulator(int bits, int interval)
    {
        const int K = 1024;
        var g = new torch.Generator(5);
        // E4M3 codes of positive values: the sum grows, so truncation error accumulates (the worst case)
        using var qa = Fp8Cast.Round(torch.rand(1, K, generator: g) * 448, Fp8Format.E4M3);
        using var qb = Fp8Cast.Round(torch.rand(1, K, generator: g) * 448, Fp8Format.E4M3);
        float ours = Fp8Exercises.PromotedDot(qa.data<float>().ToArray(), qb.data<float>().ToArray(), bits, interval);
        using var lib = new Fp8Accumulator(bits, interval).Gemm(qa, qb);
        AssertSameBits(lib.item<float>(), ours);
    }

    [Fact]
    public void Exercise5_PromotionShrinksTheError()
    {
        const int K = 4096;                                          // DeepSeek-V3's example inner dimension
        var random = new Random(6);
        var a = Enumerable.Range(0, K).Select(_ => RoundToE4M3Grid(random.NextDouble())).ToArray();
        var b = Enumerable.Range(0, K).Select(_ => RoundToE4M3Grid(random.NextDouble())).ToArray();
        double exact = a.Zip(b).Sum(p => (double)p.First * p.Second);  // products of E4M3 values are exact in double
        double never = Math.Abs(Fp8Exercises.PromotedDot(a, b, 14, 0) - exact) / exact;
        double every128 = Math.Abs(Fp8Exercises.PromotedDot(a, b, 14, 128) - exact) / exact;
        // Truncation loses < 1 grid spacing per add. Never promoted, the sum grows to ≈ K/4 ≈ 1000, spacing up to
        // 2^(9−14) = 2^-5: the loss is up to K·2^-5 ≈ 128, i.e. ~13 % of the sum (half that on average). Promoted every
        // 128, a partial sum stays below ≈ 64 (spacing ≤ 2^(5−14) = 2^-9): loss ≤ K·2^-9 = 8, under 1 %.
        Assert.True(never > 0.01, $"never promoted: {never}");
        Assert.True(every128 < never / 8, $"N_C = 128: {every128} vs never {never}");
    }

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    static float RoundToE4M3Grid(double v) => Fp8Cast.Round((float)v, Fp8Format.E4M3);

    static void AssertSameBits(float expected, float actual, string? what = null)
    {
        if (float.IsNaN(expected)) { Assert.True(float.IsNaN(actual), $"expected NaN, got {actual:R} {what}"); return; }
        Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual),
            $"expected {expected:R} (0x{BitConverter.SingleToInt32Bits(expected):X8}), got {actual:R} (0x{BitConverter.SingleToInt32Bits(actual):X8}) {what}");
    }
}
