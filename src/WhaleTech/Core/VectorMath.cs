// Vectorized float32 math for the CPU inference kernels (AbsorbedDecodeKernel's softmax, the MoE kernels' silu).
//
//   Exp(x) = 2^n · e^r,   n = round(x / ln 2),   r = x − n·ln 2 ∈ [−ln 2 / 2, ln 2 / 2]
//
// Cody–Waite reduction (ln 2 in a high part exact in float32 and a low part), e^r by its degree-7 Taylor polynomial
// in Horner form (truncation r^8 / 8! < 6e−9 relative, a tenth of float32's ulp), and 2^n built in the exponent bits.
// The float32 roundings of the reduction and the Horner steps keep the result within 2 ulps (tested). .NET's own
// Vector512.Exp was about 3× slower in the decode softmax on the reference EPYC.
// Range: below −87.3 (e^x under float32's normal range; −∞ included) the result is exactly 0, as libtorch's
// exp(−∞) = 0 that masked attention positions need; above 88 it saturates at e^88 ≈ 1.65e38 (float32 overflows at
// 88.72), which is what silu's v / (1 + e^−v) needs for very negative v; NaN stays NaN.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace WhaleTech.Core;

internal static class VectorMath
{
    const float Low = -87.3f, High = 88f;

    /// <summary>e^x in each of 16 float32 lanes (see the file header for accuracy and range).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        var tooSmall = Vector512.LessThan(x, Vector512.Create(Low));
        x = Vector512.Min(Vector512.Max(x, Vector512.Create(Low)), Vector512.Create(High));
        var n = Vector512.Round(x * Vector512.Create(1.44269504f));                              // x / ln 2
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-0.693145752f), x);               // ln 2, high part
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-1.42860677e-6f), r);                 // ln 2, low part
        var p = Vector512.Create(1f / 5040);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 720));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 120));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 24));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 6));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(0.5f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f));
        var scale = (Vector512.ConvertToInt32(n) + Vector512.Create(127)) << 23;                  // 2^n, −126 ≤ n ≤ 127
        return Vector512.ConditionalSelect(tooSmall, Vector512<float>.Zero, p * scale.AsSingle());
    }
}
