// FP8 exercises — reference solutions (see ../skeleton for the tasks and ../README.md).
//
// Papers: "FP8 Formats for Deep Learning" (Micikevicius et al. 2022, the E4M3 format); DeepSeek-V3 (2024)
// §3.3.2 "Fine-grained quantization" (1×128 tiles, 128×128 blocks) and "Increasing accumulation precision"
// (promotion to FP32 every N_C = 128 elements).
//
// Shapes: x [R, C]; blocks of br × bc elements (1×t tiles: br = 1, bc = t; t×t blocks: br = bc = t);
// scales [R/br, C/bc]; a, b [K] for a dot product.
using TorchSharp;
using WhaleTech.Fp8;
using static TorchSharp.torch;

namespace WhaleTech.Exercises.Fp8;

public static class Fp8Exercises
{
    public static double DecodeE4M3(byte code)
    {
        int sign = code >> 7, exp = (code >> 3) & 0xF, man = code & 0x7;
        double s = sign == 1 ? -1.0 : 1.0;
        if (exp == 0xF && man == 0x7) return double.NaN;                       // S.1111.111
        if (exp == 0) return s * man * Math.Pow(2, -9);                        // subnormal: m/8 · 2^-6
        return s * (1 + man / 8.0) * Math.Pow(2, exp - 7);                     // normal: 1.m · 2^(e−7)
    }

    public static float RoundE4M3(float x)
    {
        if (float.IsNaN(x)) return float.NaN;
        double a = Math.Min(Math.Abs((double)x), 448.0);                       // saturate: ±inf → ±448
        if (a == 0) return x;                                                  // ±0 keep their sign
        int e = Math.Max(Math.ILogB(a), -6);                                   // floor(log2 a), subnormals use e_min
        double q = Math.ScaleB(1.0, e - 3);                                    // grid spacing 2^(e−3)
        double y = Math.Round(a / q, MidpointRounding.ToEven) * q;             // a/q and ·q are exact
        return (float)Math.CopySign(y, x);
    }

    public static (Tensor Codes, Tensor Scales) Quantize(Tensor x, int blockRows, int blockCols)
    {
        long r = x.shape[0], c = x.shape[1];
        var blocks = x.view(r / blockRows, blockRows, c / blockCols, blockCols);   // [R/br, br, C/bc, bc]
        var scales = blocks.abs().amax([1, 3]).clamp_min(1e-12) / 448.0;          // [R/br, C/bc]
        var scaled = blocks / scales.unsqueeze(1).unsqueeze(3);
        var codes = Fp8Cast.Round(scaled, Fp8Format.E4M3, Fp8Overflow.Saturating).view(r, c);
        return (codes, scales);
    }

    public static Tensor Dequantize(Tensor codes, Tensor scales, int blockRows, int blockCols)
    {
        long r = codes.shape[0], c = codes.shape[1];
        var blocks = codes.view(r / blockRows, blockRows, c / blockCols, blockCols);
        return (blocks * scales.unsqueeze(1).unsqueeze(3)).view(r, c);
    }

    public static float TruncateMantissa(float x, int mantissaBits)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        uint dropped = (1u << (23 - mantissaBits)) - 1;                        // the low 23 − p fraction bits
        return BitConverter.UInt32BitsToSingle(bits & ~dropped);
    }

    public static float PromotedDot(float[] a, float[] b, int mantissaBits, int promotionInterval)
    {
        float acc = 0, partial = 0;
        for (int k = 0; k < a.Length; k++)
        {
            float product = a[k] * b[k];
            partial = TruncateMantissa(partial + product, mantissaBits);
            if (promotionInterval > 0 && (k + 1) % promotionInterval == 0)
            {
                acc += partial;
                partial = 0;
            }
        }
        return acc + partial;
    }
}
