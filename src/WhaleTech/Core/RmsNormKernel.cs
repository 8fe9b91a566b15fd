// RMSNorm y = x · 1/sqrt(mean(x²) + eps) · weight in one pass per row for CPU float32 inference. The libtorch form
// (Core/RmsNorm.forward) is six kernels (pow, mean, add, rsqrt, two multiplies); a decode step normalizes a few
// rows, and on caches a step leaves cold each distinct libtorch kernel costs tens of microseconds to reach, so the
// six cost more than the arithmetic. The same operations in the same precision: x² rounded, summed in float32
// (16 lanes, then the lane sum — libtorch's reduction order differs, so the sum may differ in its last bit), the
// mean, + eps, 1/sqrt, then x·r rounded and ·weight rounded.
//
// x [..., D] contiguous, weight [D]; D a multiple of 16.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Core;

internal static unsafe class RmsNormKernel
{
    /// <summary>The normalized copy of <paramref name="x"/>, or null where this pass does not apply.</summary>
    public static Tensor? Apply(Tensor x, Tensor weight, double eps)
    {
        if (!SmallGemm.Enabled || !SmallGemm.CpuFloat32Inference(x) || !SmallGemm.CpuFloat32Inference(weight)) return null;
        long D = x.shape[^1];
        if (D % 16 != 0 || D == 0 || !x.is_contiguous() || weight.dim() != 1 || weight.shape[0] != D || !weight.is_contiguous()) return null;
        long rows = x.numel() / D;
        var y = torch.empty(x.shape, dtype: ScalarType.Float32);
        Rows(SmallGemm.Data(x), SmallGemm.Data(weight), SmallGemm.Data(y), rows, (int)D, (float)eps);
        GC.KeepAlive(x); GC.KeepAlive(weight);
        return y;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows(float* x, float* w, float* y, long rows, int D, float eps)
    {
        for (long r = 0; r < rows; r++, x += D, y += D)
        {
            var acc = Vector512<float>.Zero;
            for (int i = 0; i < D; i += 16) { var v = Vector512.Load(x + i); acc += v * v; }
            float inv = 1f / MathF.Sqrt(Vector512.Sum(acc) / D + eps);
            var s = Vector512.Create(inv);
            for (int i = 0; i < D; i += 16) (Vector512.Load(x + i) * s * Vector512.Load(w + i)).Store(y + i);
        }
    }
}
