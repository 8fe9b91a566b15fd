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

/// <summary>Which elements share one scale, and how their amax is taken and their scale applied. The four of
/// DeepSeek-V3 §3.3.1 are built in; a new granularity is one subclass plus <see cref="Fp8Granularities.Register"/>.
/// Every granularity works on a 2-D view [R, C] of the tensor (all leading dims folded into rows).</summary>
public abstract class Fp8Granularity
{
    /// <summary>One scale for the whole tensor: scales [].</summary>
    public static readonly Fp8Granularity PerTensor = Fp8Granularities.Register(new PerTensorGranularity());
    /// <summary>One scale per row: scales [R, 1].</summary>
    public static readonly Fp8Granularity PerRow = Fp8Granularities.Register(new PerRowGranularity());
    /// <summary>1×t tiles along the last dim (DeepSeek-V3 activations, t = 128): scales [R, C/t].</summary>
    public static readonly Fp8Granularity Tile = Fp8Granularities.Register(new TileGranularity());
    /// <summary>t×t blocks of a 2-D view (DeepSeek-V3 weights, t = 128): scales [R/t, C/t].</summary>
    public static readonly Fp8Granularity Block = Fp8Granularities.Register(new BlockGranularity());

    /// <summary>Registry key ("tensor", "row", "tile", "block", …).</summary>
    public abstract string Key { get; }

    /// <summary>The name in tables and recipes for tile size <paramref name="t"/> ("tensor", "row", "1x128", "128x128").</summary>
    public virtual string Name(int t) => Key;

    /// <summary>Max |x| per group of <paramref name="abs2d"/> [R, C], shaped like the scales.</summary>
    public abstract Tensor Amax(Tensor abs2d, int t);

    /// <summary><paramref name="op"/>(x, scale) with each group's scale broadcast over it; [R, C] in and out.</summary>
    public abstract Tensor Apply(Tensor x2d, Tensor scales, int t, Func<Tensor, Tensor, Tensor> op);

    public override string ToString() => Key;

    sealed class PerTensorGranularity : Fp8Granularity
    {
        public override string Key => "tensor";
        public override Tensor Amax(Tensor a, int t) => a.max();                                         // []
        public override Tensor Apply(Tensor x, Tensor s, int t, Func<Tensor, Tensor, Tensor> op) => op(x, s);
    }

    sealed class PerRowGranularity : Fp8Granularity
    {
        public override string Key => "row";
        public override Tensor Amax(Tensor a, int t) => a.amax([1], keepdim: true);                      // [R, 1]
        public override Tensor Apply(Tensor x, Tensor s, int t, Func<Tensor, Tensor, Tensor> op) => op(x, s);
    }

    sealed class TileGranularity : Fp8Granularity
    {
        public override string Key => "tile";
        public override string Name(int t) => $"1x{t}";
        public override Tensor Amax(Tensor a, int t) => Fp8Quantizer.Tiles(a, t).amax([2]);             // [R, C/t]
        public override Tensor Apply(Tensor x, Tensor s, int t, Func<Tensor, Tensor, Tensor> op)
            => op(Fp8Quantizer.Tiles(x, t), s.unsqueeze(2)).reshape(x.shape[0], -1)[.., ..(int)x.shape[1]];   // via [R, C/t, t]
    }

    sealed class BlockGranularity : Fp8Granularity
    {
        public override string Key => "block";
        public override string Name(int t) => $"{t}x{t}";
        public override Tensor Amax(Tensor a, int t) => Fp8Quantizer.Blocks(a, t).amax([1, 3]);        // [R/t, C/t]
        public override Tensor Apply(Tensor x, Tensor s, int t, Func<Tensor, Tensor, Tensor> op)
        {
            long r = x.shape[0], c = x.shape[1];
            return op(Fp8Quantizer.Blocks(x, t), s.unsqueeze(1).unsqueeze(3))                           // [R/t, t, C/t, t]
                .reshape(Fp8Quantizer.PadTo(r, t), Fp8Quantizer.PadTo(c, t))[..(int)r, ..(int)c];
        }
    }
}

/// <summary>The granularity registry: key → granularity.</summary>
public static class Fp8Granularities
{
    /// <summary>Case-insensitive, trimmed keys; a second registration of a key replaces the first in place.</summary>
    static readonly NamedRegistry<Fp8Granularity> Registry = new(StringComparer.OrdinalIgnoreCase, DuplicateName.ReplaceInPlace, key: n => n.Trim());

    /// <summary>Adds a granularity under its <see cref="Fp8Granularity.Key"/> (replacing one of the same key).</summary>
    public static Fp8Granularity Register(Fp8Granularity g)
    {
        ArgumentNullException.ThrowIfNull(g);
        // Constructing a subclass need not run Fp8Granularity's static initializer (beforefieldinit), so a user's
        // granularity registered first would otherwise land before the built-in four.
        EnsureBuiltIns();
        return Registry.Register(g.Key, g);
    }

    /// <summary>Registered keys (the built-in four first).</summary>
    public static IReadOnlyList<string> Keys { get { EnsureBuiltIns(); return Registry.Names; } }

    /// <summary>The granularity with this key or table name ("tile" or "1x128"); unknown names list the registered keys.</summary>
    public static Fp8Granularity Get(string name, string parameter = "granularity")
    {
        EnsureBuiltIns();
        if (Registry.TryGet(name, out var g)) return g;
        return (name is null ? null : Registry.Find((_, v) => string.Equals(v.Name(128), name.Trim(), StringComparison.OrdinalIgnoreCase)))
               ?? throw Registry.Unknown(parameter, name);
    }

    /// <summary>The short name used in recipes, tables and on the command line: tensor, row, 1xt, txt.</summary>
    public static string Name(Fp8Granularity g, int t = 128) => g.Name(t);

    static void EnsureBuiltIns() => System.Runtime.CompilerServices.RuntimeHelpers.RunClassConstructor(typeof(Fp8Granularity).TypeHandle);
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
        var amax = granularity.Amax(As2D(x).abs(), tileSize);                        // shape of the scales
        return amax.MoveToOuterDisposeScope();
    }

    /// <summary>x / scale (divide) or x · scale, with the scales broadcast over their groups.</summary>
    internal static Tensor ApplyScales(Tensor x, Tensor scales, Fp8Granularity granularity, int tileSize, bool divide)
    {
        using var scope = NewDisposeScope();
        var y = granularity.Apply(As2D(x), scales, tileSize, divide ? (a, s) => a / s : (a, s) => a * s);   // [R, C]
        return y.reshape(x.shape).MoveToOuterDisposeScope();
    }

    static Tensor As2D(Tensor x) => x.dim() == 1 ? x.unsqueeze(0) : x.reshape(-1, x.shape[^1]);

    internal static long PadTo(long n, int t) => (n + t - 1) / t * t;

    /// <summary>[R, C] → [R, C/t, t], zero-padding C up to a multiple of t.</summary>
    internal static Tensor Tiles(Tensor x2, int t)
    {
        long r = x2.shape[0], c = x2.shape[1];
        var padded = c % t == 0 ? x2 : nn.functional.pad(x2, [0, PadTo(c, t) - c]);
        return padded.reshape(r, -1, t);
    }

    /// <summary>[R, C] → [R/t, t, C/t, t], zero-padding both dims up to multiples of t.</summary>
    internal static Tensor Blocks(Tensor x2, int t)
    {
        long r = x2.shape[0], c = x2.shape[1];
        var padded = r % t == 0 && c % t == 0 ? x2 : nn.functional.pad(x2, [0, PadTo(c, t) - c, 0, PadTo(r, t) - r]);
        return padded.reshape(PadTo(r, t) / t, t, PadTo(c, t) / t, t);
    }
}
