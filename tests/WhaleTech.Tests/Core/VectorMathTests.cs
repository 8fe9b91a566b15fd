using System.Runtime.Intrinsics;
using WhaleTech.Core;

namespace WhaleTech.Tests.Core;

/// <summary>Core/VectorMath.Exp against double-precision Math.Exp (runs on any CPU: .NET emulates Vector512 where
/// AVX-512 is absent).</summary>
public class VectorMathTests
{
    static float Exp(float x) => VectorMath.Exp(Vector512.Create(x)).GetElement(0);

    [Fact]
    public void ExpIsWithinTwoUlpsOverTheNormalRange()
    {
        // Cody–Waite reduction (|r| ≤ ln 2 / 2) + degree-7 Taylor: truncation < 6e−9 relative; the float32 roundings
        // of the reduction and the Horner steps add about one ulp (2^−23 ≈ 1.2e−7). Two ulps relative is the bound.
        double worst = 0;
        for (int i = -87000; i <= 88000; i++)
        {
            float x = i / 1000f;
            double exact = Math.Exp(x);
            worst = Math.Max(worst, Math.Abs(Exp(x) - exact) / exact);
        }
        Assert.True(worst <= 2.4e-7, $"worst relative error {worst}");
        Assert.Equal(1f, Exp(0f));
    }

    [Fact]
    public void ExpIsExactlyZeroBelowTheNormalRangeSaturatesAboveAndKeepsNaN()
    {
        Assert.Equal(0f, Exp(float.NegativeInfinity));     // masked attention positions contribute exactly nothing
        Assert.Equal(0f, Exp(-90f));
        Assert.Equal(Exp(88f), Exp(1000f));                 // saturates at e^88 instead of overflowing
        Assert.Equal(Exp(88f), Exp(float.PositiveInfinity));
        Assert.True(float.IsFinite(Exp(88f)) && Exp(88f) > 1e38f);
        Assert.True(float.IsNaN(Exp(float.NaN)));
    }
}
