// The two 8-bit floating-point formats of "FP8 Formats for Deep Learning" (Micikevicius et al., 2022),
// as libtorch names them (Float8_e4m3fn, Float8_e5m2) and as DeepSeek-V3 §3.3 uses them.
//
//   E4M3 ("fn" = finite, no infinities):  1 sign, 4 exponent (bias 7), 3 mantissa bits.
//        max 448 = 1.75·2^8; smallest normal 2^-6; subnormals down to 2^-9; one NaN per sign (S.1111.111).
//   E5M2 (IEEE-like):                      1 sign, 5 exponent (bias 15), 2 mantissa bits.
//        max 57344 = 1.75·2^15; smallest normal 2^-14; subnormals down to 2^-16; ±inf and NaNs.
//
// Overflow modes (what a value whose rounded magnitude exceeds max becomes):
//   NonSaturating  E4M3 → NaN, E5M2 → ±inf; ±inf input → NaN (E4M3) / ±inf (E5M2).
//                  This is exactly libtorch's eager cast x.to(float8) on CPU (c10 fp8*_from_fp32_value) in the
//                  libtorch 2.10 that TorchSharp 0.107 ships: 464 → 448 (tie to even), 465 → NaN, 480 → NaN.
//                  (PyTorch 2.11 eager casts were reported to behave the same way; not checked here: no PyTorch 2.11 on this machine.)
//   Saturating     clamp to ±max first, then cast as above: 465 → 448, ±inf → ±max, NaN stays NaN.
//                  This is the "satfinite" conversion of Hopper's cvt instruction and of Transformer Engine,
//                  and what was reported for PyTorch 2.12 (not checked here); our reference is clamp(x, -max, max).to(float8).
using static TorchSharp.torch;

namespace WhaleTech.Fp8;

/// <summary>What happens to values whose rounded magnitude is above the format's maximum.</summary>
public enum Fp8Overflow
{
    /// <summary>E4M3 → NaN, E5M2 → ±inf (libtorch 2.10 CPU eager cast).</summary>
    NonSaturating,
    /// <summary>Clamp to ±max, then cast (±inf → ±max, NaN stays NaN).</summary>
    Saturating,
}

/// <summary>An 8-bit float format: its bit layout and the numbers that follow from it.</summary>
public sealed record Fp8Format(string Name, int ExponentBits, int MantissaBits, int Bias, double MaxValue, bool HasInfinity, int LibTorchScalarType)
{
    /// <summary>E4M3fn: bias 7, max 448, no infinities, subnormals down to 2^-9.</summary>
    public static readonly Fp8Format E4M3 = new("e4m3", 4, 3, 7, 448.0, HasInfinity: false, LibTorchScalarType: 24);

    /// <summary>E5M2: bias 15, max 57344, ±inf, subnormals down to 2^-16.</summary>
    public static readonly Fp8Format E5M2 = new("e5m2", 5, 2, 15, 57344.0, HasInfinity: true, LibTorchScalarType: 23);

    /// <summary>Exponent of the smallest normal number: 1 − bias (−6 for E4M3, −14 for E5M2).</summary>
    public int MinNormalExponent => 1 - Bias;

    /// <summary>Smallest positive normal value (2^-6 for E4M3).</summary>
    public double MinNormal => Math.Pow(2, MinNormalExponent);

    /// <summary>Smallest positive subnormal value (2^-9 for E4M3, 2^-16 for E5M2).</summary>
    public double MinSubnormal => Math.Pow(2, MinNormalExponent - MantissaBits);

    /// <summary>The float32 that libtorch gives for this format's NaN (S.1111.111 for E4M3, S.11111.11 for E5M2):
    /// exponent all ones and the top mantissa bits set (0x7FF00000 / 0x7FE00000). The sign follows the input.</summary>
    public float NaN => BitConverter.UInt32BitsToSingle(0x7F800000u | (((1u << MantissaBits) - 1) << (23 - MantissaBits)));

    /// <summary>libtorch's own float8 dtype for this format (TorchSharp names no float8 ScalarType).</summary>
    public ScalarType LibTorchDType => (ScalarType)LibTorchScalarType;

    /// <summary>The value of one 8-bit code (sign, exponent, mantissa), decoded in plain arithmetic.</summary>
    public double Decode(byte code)
    {
        int sign = code >> 7, exp = (code >> MantissaBits) & ((1 << ExponentBits) - 1), man = code & ((1 << MantissaBits) - 1);
        double s = sign == 1 ? -1 : 1;
        int allOnes = (1 << ExponentBits) - 1;
        if (HasInfinity && exp == allOnes) return man == 0 ? s * double.PositiveInfinity : double.NaN;
        if (!HasInfinity && exp == allOnes && man == (1 << MantissaBits) - 1) return double.NaN;   // S.1111.111
        if (exp == 0) return s * man * Math.Pow(2, MinNormalExponent - MantissaBits);           // subnormal
        return s * (1 + man / (double)(1 << MantissaBits)) * Math.Pow(2, exp - Bias);
    }

    /// <summary>"e4m3" or "e5m2" (case-insensitive) → the format; anything else is a WhaleArgumentException.</summary>
    public static Fp8Format Parse(string parameter, string name) => name.Trim().ToLowerInvariant() switch
    {
        "e4m3" or "e4m3fn" => E4M3,
        "e5m2" => E5M2,
        _ => throw new Runtime.WhaleArgumentException(parameter, name, "must be e4m3 or e5m2"),
    };

    public override string ToString() => Name;
}
