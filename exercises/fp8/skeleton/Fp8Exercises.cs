// FP8 exercises — fill in each TODO, then run `dotnet test exercises/fp8` until every test passes.
//
// Papers: "FP8 Formats for Deep Learning" (Micikevicius et al. 2022, the E4M3 format); DeepSeek-V3 (2024)
// §3.3.2 "Fine-grained quantization" (1×128 tiles, 128×128 blocks) and "Increasing accumulation precision"
// (promotion to FP32 every N_C = 128 elements). The library versions are src/WhaleTech/Fp8/Fp8Format.cs,
// Fp8Cast.cs, Fp8Quantizer.cs and Fp8Accumulator.cs — read their headers, but try first without their code.
//
// E4M3 ("fn": finite, no infinities): 1 sign bit, 4 exponent bits (bias 7), 3 mantissa bits.
//   normal     (−1)^s · (1 + m/8) · 2^(e−7)      e = 1 … 15   (e = 15, m = 7 is NaN)
//   subnormal  (−1)^s · (m/8) · 2^−6             e = 0
//   max 448 = 1.75 · 2^8, smallest normal 2^−6, smallest subnormal 2^−9.
//
// Shapes: x [R, C]; blocks of br × bc elements (1×t tiles: br = 1, bc = t; t×t blocks: br = bc = t);
// scales [R/br, C/bc]; a, b [K] for a dot product.
using TorchSharp;
using WhaleTech.Fp8;
using static TorchSharp.torch;

namespace WhaleTech.Exercises.Fp8;

public static class Fp8Exercises
{
    /// <summary>Exercise 1 — decode one E4M3 code (bits s.eeee.mmm) to its value. 0x38 → 1.0, 0x7E → 448,
    /// 0x01 → 2^−9, 0x80 → −0, 0x7F and 0xFF → NaN.</summary>
    public static double DecodeE4M3(byte code)
    {
        // TODO: split the byte into sign (bit 7), exponent (bits 6–3) and mantissa (bits 2–0); handle NaN and e = 0.
        throw new NotImplementedException("Exercise 1: DecodeE4M3");
    }

    /// <summary>Exercise 2 — the E4M3 value nearest to x: round to nearest, ties to even mantissa, SATURATING
    /// (|x| above 448, ±inf included, becomes ±448), NaN stays NaN, and the sign survives (−1e−30 → −0).
    /// 464 (halfway between 448 and 480) → 448; 2^−10 (halfway between 0 and 2^−9) → 0.</summary>
    public static float RoundE4M3(float x)
    {
        // TODO: a = min(|x|, 448) in double; e = max(floor(log2 a), −6) (Math.ILogB is exact); the grid spacing
        // is q = 2^(e−3); y = round-half-even(a / q) · q (Math.Round with MidpointRounding.ToEven); copy the sign.
        throw new NotImplementedException("Exercise 2: RoundE4M3");
    }

    /// <summary>Exercise 3a — fine-grained scaling (DeepSeek-V3 §3.3.2). For every br × bc block of x [R, C]
    /// (R divisible by br, C by bc): scale = max(amax, 1e−12) / 448 with amax = max |x| over the block (an fp32
    /// division), codes = E4M3(x / scale), saturating. Returns codes [R, C] (fp32 values on the E4M3 grid) and
    /// scales [R/br, C/bc]. Activations use 1×128 tiles (br = 1, bc = 128), weights 128×128 blocks.</summary>
    public static (Tensor Codes, Tensor Scales) Quantize(Tensor x, int blockRows, int blockCols)
    {
        // TODO: view x as [R/br, br, C/bc, bc]; amax over dims 1 and 3; broadcast the scales back with unsqueeze.
        // For the cast use Fp8Cast.Round(t, Fp8Format.E4M3, Fp8Overflow.Saturating) (the library's; it is your
        // exercise 2 on a tensor, bit for bit).
        throw new NotImplementedException("Exercise 3a: Quantize");
    }

    /// <summary>Exercise 3b — the inverse: codes [R, C] · scale of their block → [R, C].</summary>
    public static Tensor Dequantize(Tensor codes, Tensor scales, int blockRows, int blockCols)
    {
        // TODO: the same block view as Quantize, multiply, view back to [R, C].
        throw new NotImplementedException("Exercise 3b: Dequantize");
    }

    /// <summary>Exercise 4 — keep only <paramref name="mantissaBits"/> (p ≤ 23) fraction bits of a float32,
    /// truncating toward zero: what a tensor core's limited accumulator does to the bits shifted out
    /// (DeepSeek-V3 measured about 14 bits on H800). 1.96875 = 1.11111₂ with p = 4 → 1.9375 = 1.1111₂;
    /// −1.96875 → −1.9375.</summary>
    public static float TruncateMantissa(float x, int mantissaBits)
    {
        // TODO: clear the low 23 − p bits of the IEEE bit pattern (BitConverter.SingleToUInt32Bits /
        // UInt32BitsToSingle). Why is that right for float32 subnormals too?
        throw new NotImplementedException("Exercise 4: TruncateMantissa");
    }

    /// <summary>Exercise 5 — a dot product Σ a_k·b_k as the H800 + DeepSeek-V3 accumulate it: products (float32)
    /// go into a limited-precision partial sum, partial ← TruncateMantissa(partial + a_k·b_k, p); after every
    /// N_C = <paramref name="promotionInterval"/> elements the partial sum is promoted, acc ← acc + partial
    /// (a float32 add), partial ← 0 (N_C = 0: never). Result acc + partial. a = [16, ½, ½, ½, ½], b = 1,
    /// p = 4: N_C = 0 → 16, N_C = 2 → 17.5, N_C = 1 → 18 (exact).</summary>
    public static float PromotedDot(float[] a, float[] b, int mantissaBits, int promotionInterval)
    {
        // TODO: one loop over k with float (not double) arithmetic; promote when (k + 1) % N_C == 0.
        throw new NotImplementedException("Exercise 5: PromotedDot");
    }
}
