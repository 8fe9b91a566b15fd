// Scaled FP8 quantization: x ≈ codes · scale, with one scale per tensor, per row, per 1×128 tile or per
// 128×128 block (DeepSeek-V3 §3.3.2 "Fine-grained quantization": activations in 1×128 tiles per token,
// weights in 128×128 blocks). Online scaling: scale = max(amax, floor) / max_fp8, so the largest value of
// each group maps onto the format's maximum; codes = FP8(x / scale).
// Optional power-of-two scales (exact to apply, as on hardware with exponent-only scales) are rounded
// UP (2^ceil(log2 s)), the safe direction: |x| / s can then never exceed max_fp8.
//
// Shapes (x is viewed as 2-D [R, C]: all leading dims flattened into rows R, C = last dim; t = tile size):
//   per tensor   scales []
//   per row      scales [R, 1]
//   1×t tiles    scales [R, ⌈C/t⌉]          (a ragged last tile is padded with zeros)
//   t×t blocks   scales [⌈R/t⌉, ⌈C/t⌉]
//   codes        same shape as x, float32 values that are exactly representable in the format
using TorchSharp;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Fp8;

/// <summary>Which elements share one scale.</summary>
public enum Fp8Granularity
{
    PerTensor,
    PerRow,
    /// <summary>1×t tiles along the last dim (DeepSeek-V3 activations, t = 128).</summary>
    Tile,
    /// <summary>t×t blocks of a 2-D view (DeepSeek-V3 weights, t = 128).</summary>
    Block,
}

public static class Fp8Granularities
{
    /// <summary>The short name used in recipes, tables and on the command line: tensor, row, 1xt, txt.</summary>
    public static string Name(Fp8Granularity g, int t = 128) => g switch
    {
        Fp8Granularity.PerTensor => "tensor",
        Fp8Granularity.PerRow => "row",
        Fp8Granularity.Tile => $"1x{t}",
        _ => $"{t}x{t}",
    };
}

/// <summary>How scales are chosen.</summary>
/// <param name="TileSize">t for 1×t tiles and t×t blocks (128 in DeepSeek-V3).</param>
/// <param name="AmaxFloor">Smallest amax used to form a scale, so all-zero groups get a finite scale.</param>
/// <param name="PowerOfTwo">Round scales up to powers of two.</param>
/// <param name="Overflow">Overflow mode of the cast (saturating by default: delayed scales can be stale).</param>
/// <param name="UnitScale">No scaling at all (scale 1): the raw cast, to show underflow and overflow.</param>
/// <param name="Cast">Who rounds to FP8: libtorch's float8 dtypes (Native, default: fastest) or the float32-op emulation
/// (Emulated: the readable model). Bit-identical results (0 mismatches over all 2^32 float32 patterns).</param>
public sealed record Fp8Scaling(int TileSize = 128, double AmaxFloor = 1e-12, bool PowerOfTwo = false, Fp8Overflow Overflow = Fp8Overflow.Saturating,
                                bool UnitScale = false, Fp8CastImplementation Cast = Fp8CastImplementation.Native)
{
    public static readonly Fp8Scaling Default = new();

    public void Validate()
    {
        Guard.Positive(nameof(TileSize), TileSize);
        Guard.Positive(nameof(AmaxFloor), AmaxFloor);
    }
}

/// <summary>FP8 codes (as float32) and the scales that map them back: x ≈ codes · scale.</summary>
public sealed record Fp8Tensor(Tensor Codes, Tensor Scales, Fp8Format Format, Fp8Granularity Granularity, int TileSize) : IDisposable
{
    /// <summary>codes · scale, same shape as the quantized tensor.</summary>
    public Tensor Dequantize() => Fp8Quantizer.ApplyScales(Codes, Scales, Granularity, TileSize, divide: false);

    public void Dispose() { Codes.Dispose(); Scales.Dispose(); }
}

public static class Fp8Quantizer
{
    /// <summary>Quantizes <paramref name="x"/> to <paramref name="format"/> with one scale per group.</summary>
    public static Fp8Tensor Quantize(Tensor x, Fp8Format format, Fp8Granularity granularity, Fp8Scaling? scaling = null)
    {
        scaling ??= Fp8Scaling.Default;
        scaling.Validate();
        if (x.dim() == 0) throw new WhaleArgumentException("x", "a scalar", "must have at least one dimension");
        using var scope = NewDisposeScope();
        var x32 = x.to_type(ScalarType.Float32);
        var amax = Amax(x32, granularity, scaling.TileSize);                           // shape of the scales
        var scales = ScaleFromAmax(amax, format, scaling);
        var codes = Fp8Cast.Round(ApplyScales(x32, scales, granularity, scaling.TileSize, divide: true), format, scaling.Overflow, scaling.Cast);
        return new Fp8Tensor(codes.MoveToOuterDisposeScope(), scales.MoveToOuterDisposeScope(), format, granularity, scaling.TileSize);
    }

    /// <summary>Quantizes with given scales (shaped for <paramref name="granularity"/>), e.g. delayed ones.</summary>
    public static Fp8Tensor QuantizeWithScales(Tensor x, Tensor scales, Fp8Format format, Fp8Granularity granularity, Fp8Scaling? scaling = null)
    {
        scaling ??= Fp8Scaling.Default;
        using var scope = NewDisposeScope();
        var codes = Fp8Cast.Round(ApplyScales(x.to_type(ScalarType.Float32), scales, granularity, scaling.TileSize, divide: true), format, scaling.Overflow, scaling.Cast);
        return new Fp8Tensor(codes.MoveToOuterDisposeScope(), scales.clone().MoveToOuterDisposeScope(), format, granularity, scaling.TileSize);
    }

    /// <summary>Quantize then dequantize: the values an FP8 GEMM sees, in float32.</summary>
    public static Tensor FakeQuantize(Tensor x, Fp8Format format, Fp8Granularity granularity, Fp8Scaling? scaling = null)
    {
        using var q = Quantize(x, format, granularity, scaling);
        return q.Dequantize();
    }

    /// <summary>scale = max(amax, floor) / max_fp8, optionally rounded up to a power of two.</summary>
    public static Tensor ScaleFromAmax(Tensor amax, Fp8Format format, Fp8Scaling scaling)
    {
        using var scope = NewDisposeScope();
        if (scaling.UnitScale) return torch.ones_like(amax).MoveToOuterDisposeScope();
        var s = amax.clamp_min(scaling.AmaxFloor) / format.MaxValue;
        if (scaling.PowerOfTwo)
        {
            var (m, e) = torch.frexp(s);                       // s = m·2^e, m ∈ [0.5, 1)
            var up = torch.where(m == 0.5, e - 1, e);          // exact powers of two stay, others round up
            s = torch.ldexp(torch.ones_like(s), up);
        }
        return s.MoveToOuterDisposeScope();
    }

    /// <summary>Max |x| per group, shaped like the scales of <paramref name="granularity"/>.</summary>
    public static Tensor Amax(Tensor x, Fp8Granularity granularity, int tileSize = 128)
    {
        using var scope = NewDisposeScope();
        var a = As2D(x).abs();                                                          // [R, C]
        Tensor amax = granularity switch
        {
            Fp8Granularity.PerTensor => a.max(),                                        // []
            Fp8Granularity.PerRow => a.amax([1], keepdim: true),                        // [R, 1]
            Fp8Granularity.Tile => Tiles(a, tileSize).amax([2]),                         // [R, C/t]
            Fp8Granularity.Block => Blocks(a, tileSize).amax([1, 3]),                    // [R/t, C/t]
            _ => throw new WhaleArgumentException("granularity", granularity, "must be PerTensor, PerRow, Tile or Block"),
        };
        return amax.MoveToOuterDisposeScope();
    }

    /// <summary>x / scale (divide) or x · scale, with the scales broadcast over their groups.</summary>
    internal static Tensor ApplyScales(Tensor x, Tensor scales, Fp8Granularity granularity, int tileSize, bool divide)
    {
        using var scope = NewDisposeScope();
        var shape = x.shape;
        var x2 = As2D(x);                                                               // [R, C]
        long r = x2.shape[0], c = x2.shape[1];
        Tensor Op(Tensor a, Tensor s) => divide ? a / s : a * s;
        Tensor y = granularity switch
        {
            Fp8Granularity.PerTensor or Fp8Granularity.PerRow => Op(x2, scales),
            Fp8Granularity.Tile => Op(Tiles(x2, tileSize), scales.unsqueeze(2))         // [R, C/t, t]
                .reshape(r, -1)[.., ..(int)c],
            Fp8Granularity.Block => Op(Blocks(x2, tileSize), scales.unsqueeze(1).unsqueeze(3))   // [R/t, t, C/t, t]
                .reshape(PadTo(r, tileSize), PadTo(c, tileSize))[..(int)r, ..(int)c],
            _ => throw new WhaleArgumentException("granularity", granularity, "must be PerTensor, PerRow, Tile or Block"),
        };
        return y.reshape(shape).MoveToOuterDisposeScope();
    }

    static Tensor As2D(Tensor x) => x.dim() == 1 ? x.unsqueeze(0) : x.reshape(-1, x.shape[^1]);

    static long PadTo(long n, int t) => (n + t - 1) / t * t;

    /// <summary>[R, C] → [R, C/t, t], zero-padding C up to a multiple of t.</summary>
    static Tensor Tiles(Tensor x2, int t)
    {
        long r = x2.shape[0], c = x2.shape[1];
        var padded = c % t == 0 ? x2 : nn.functional.pad(x2, [0, PadTo(c, t) - c]);
        return padded.reshape(r, -1, t);
    }

    /// <summary>[R, C] → [R/t, t, C/t, t], zero-padding both dims up to multiples of t.</summary>
    static Tensor Blocks(Tensor x2, int t)
    {
        long r = x2.shape[0], c = x2.shape[1];
        var padded = r % t == 0 && c % t == 0 ? x2 : nn.functional.pad(x2, [0, PadTo(c, t) - c, 0, PadTo(r, t) - r]);
        return padded.reshape(PadTo(r, t) / t, t, PadTo(c, t) / t, t);
    }
}
