// Casting float32 tensors to FP8 values, emulated with ordinary float32 tensor ops (CPU and CUDA alike),
// bit-exact against libtorch's own float8 casts (checked in tests and by `whale fp8 sweep` over all 2^32
// float32 bit patterns).
//
// Round-to-nearest-even onto a grid with p mantissa bits and a smallest exponent e_min:
//   a  = |x|
//   e  = floor(log2 a)           from frexp: a = m·2^f with m ∈ [0.5, 1)  ⇒  e = f − 1   (exact, also for
//                                float32 subnormals; no log2 fix-up near powers of two is needed)
//   e' = max(e, e_min)           below the smallest normal the grid spacing stays 2^(e_min − p): subnormals
//   q  = 2^(e' − p)              the spacing of representable values around a
//   y  = round(a / q) · q        torch.round rounds halves to even; a/q and ·q are exact power-of-two scalings
//   result = copysign(y, x)      so −1e-30 → −0 like the hardware
// A carry out of the mantissa (1.1111·2^e → 2^(e+1)) needs no special case: the product is still exact.
// Then overflow (y > max) and the specials (NaN, ±inf) are applied per Fp8Overflow.
//
// Shapes: every function is elementwise; input [*] → output [*], float32.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Fp8;

/// <summary>How a value between two grid points is rounded.</summary>
public enum Rounding
{
    /// <summary>Round to nearest, ties to even (IEEE default; what FP8 casts do).</summary>
    NearestEven,
    /// <summary>Truncate toward zero (what a right-shifting accumulator does to the bits it drops).</summary>
    TowardZero,
}

/// <summary>Which code performs an FP8 cast. Both give the same bits (the 2^32 sweep, `whale fp8 sweep`, found 0
/// mismatches), so the choice only changes speed: Native is 2 kernels, Emulated about 15.</summary>
public enum Fp8CastImplementation
{
    /// <summary>float32 tensor ops (frexp, round, ldexp …): the readable model of the hardware, <see cref="Fp8Cast.Round(Tensor, Fp8Format, Fp8Overflow)"/>.</summary>
    Emulated,
    /// <summary>libtorch's own float8 dtypes: x.to(float8).to(float32) (<see cref="Fp8Cast.Reference"/>).</summary>
    Native,
}

public static class Fp8Cast
{
    /// <summary>The FP8 value nearest to each element, by the chosen implementation (same bits either way).</summary>
    public static Tensor Round(Tensor x, Fp8Format format, Fp8Overflow overflow, Fp8CastImplementation implementation)
        => implementation == Fp8CastImplementation.Native ? Reference(x, format, overflow) : Round(x, format, overflow);

    /// <summary>Rounds |x| onto a float grid with <paramref name="mantissaBits"/> fraction bits whose exponent
    /// never goes below <paramref name="minExponent"/> (gradual underflow). No overflow handling: the result can
    /// exceed any maximum, and NaN/inf inputs give unspecified values (callers mask them).</summary>
    public static Tensor RoundToGrid(Tensor x, int mantissaBits, int minExponent, Rounding rounding = Rounding.NearestEven)
    {
        using var scope = NewDisposeScope();
        var a = x.abs();                                            // [*]
        var (_, f) = torch.frexp(a);                                // a = m·2^f, m ∈ [0.5, 1); f int32
        var e = (f - 1).clamp_min(minExponent);                     // floor(log2 a), at least e_min
        var qe = e - mantissaBits;                                  // log2 of the grid spacing
        var scaled = Pow2Scale(a, qe.neg());                        // a / q, exact
        var steps = rounding == Rounding.NearestEven ? scaled.round() : scaled.trunc();
        var y = Pow2Scale(steps, qe);                               // back to value, exact (may be inf)
        return y.copysign(x).MoveToOuterDisposeScope();
    }

    /// <summary>t · 2^n in two exact halves: ldexp forms 2^n in float32 first, which overflows (n ≥ 128) or flushes
    /// to zero (n ≤ −150) for the shifts of float32-sized grids and subnormal inputs, though t · 2^n is representable.</summary>
    static Tensor Pow2Scale(Tensor t, Tensor n)
    {
        var half = n.div(2, rounding_mode: RoundingMode.trunc);
        return torch.ldexp(torch.ldexp(t, half), n - half);
    }

    /// <summary>The FP8 value nearest to each element of <paramref name="x"/>, as float32 (emulated with
    /// float32 tensor ops; bit-exact with <see cref="Reference"/>). Non-float32 inputs are first converted
    /// to float32.</summary>
    public static Tensor Round(Tensor x, Fp8Format format, Fp8Overflow overflow = Fp8Overflow.NonSaturating)
    {
        using var scope = NewDisposeScope();
        var x32 = x.dtype == ScalarType.Float32 ? x : x.to_type(ScalarType.Float32);
        float max = (float)format.MaxValue;
        if (overflow == Fp8Overflow.Saturating) x32 = x32.clamp(-max, max);     // ±inf → ±max, NaN stays
        var y = RoundToGrid(x32, format.MantissaBits, format.MinNormalExponent);
        if (overflow == Fp8Overflow.NonSaturating)
        {
            // Too large after rounding (this includes ±inf inputs): NaN for E4M3fn, ±inf for E5M2.
            var tooLarge = y.abs() > max;
            var special = format.HasInfinity ? torch.full_like(y, float.PositiveInfinity) : torch.full_like(y, format.NaN);
            y = torch.where(tooLarge, special.copysign(x32), y);
        }
        y = torch.where(x32.isnan(), torch.full_like(y, format.NaN).copysign(x32), y);   // NaN → the format's NaN
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>libtorch's own cast: x.to(float8).to(float32), with the saturating mode realised as
    /// clamp(x, −max, max) first. The ground truth the emulation is tested against.</summary>
    public static Tensor Reference(Tensor x, Fp8Format format, Fp8Overflow overflow = Fp8Overflow.NonSaturating)
    {
        using var scope = NewDisposeScope();
        var x32 = x.dtype == ScalarType.Float32 ? x : x.to_type(ScalarType.Float32);
        if (overflow == Fp8Overflow.Saturating) x32 = x32.clamp(-format.MaxValue, format.MaxValue);
        return x32.to_type(format.LibTorchDType).to_type(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>Real 1-byte float8 storage (libtorch's Float8 dtypes) of values that are already FP8 codes
    /// (the output of <see cref="Round"/>): exact, and 4x smaller than float32. Used for memory accounting.</summary>
    public static Tensor ToStorage(Tensor codes, Fp8Format format) => codes.to_type(format.LibTorchDType);

    /// <summary>Float8 storage back to float32 values.</summary>
    public static Tensor FromStorage(Tensor stored) => stored.to_type(ScalarType.Float32);

    /// <summary>One value through the emulated cast (convenience for tables and the CLI).</summary>
    public static float Round(float x, Fp8Format format, Fp8Overflow overflow = Fp8Overflow.NonSaturating)
    {
        using var t = torch.tensor(new[] { x });
        using var y = Round(t, format, overflow);
        return y.data<float>()[0];
    }
}
