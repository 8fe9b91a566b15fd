// RoPE's rotation x·cos + swap(x)·(±sin) (Core/RotaryEmbedding.Rotate) as one pass over memory for CPU float32
// inference: the libtorch form is eight ops (reshape, flip, view, two multiplies, an add, broadcasts), and a decode
// step rotates a few hundred elements, so op overhead is all it costs. Same roundings as the libtorch form: each
// product rounded, then the sum (no fused multiply-add), so the same bits.
//
// x [B, T, d] or [B, T, H, d] (last dimension contiguous, any other strides); cos, sin [B, T, d] contiguous.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Core;

internal static unsafe class RotaryKernel
{
    /// <summary>The rotated copy of <paramref name="x"/> (contiguous), or null where this pass does not apply.</summary>
    public static Tensor? Rotate(Tensor x, Tensor cos, Tensor sin)
    {
        if (!SmallGemm.CpuFloat32Inference(x) || !SmallGemm.CpuFloat32Inference(cos) || !SmallGemm.CpuFloat32Inference(sin)) return null;
        int dims = (int)x.dim();
        if ((dims != 3 && dims != 4) || cos.dim() != 3 || !cos.is_contiguous() || !sin.is_contiguous() || x.stride(-1) != 1) return null;
        long B = x.shape[0], T = x.shape[1], H = dims == 4 ? x.shape[2] : 1, d = x.shape[^1];
        if (cos.shape[0] != B || cos.shape[1] != T || cos.shape[2] != d || !sin.shape.SequenceEqual(cos.shape) || d % 2 != 0) return null;
        long sb = x.stride(0), st = x.stride(1), sh = dims == 4 ? x.stride(2) : 0;
        var y = torch.empty(x.shape, dtype: ScalarType.Float32);
        float* px = SmallGemm.Data(x), pc = SmallGemm.Data(cos), ps = SmallGemm.Data(sin), py = SmallGemm.Data(y);
        for (long b = 0; b < B; b++)
            for (long t = 0; t < T; t++)
            {
                float* c = pc + (b * T + t) * d, s = ps + (b * T + t) * d;
                for (long h = 0; h < H; h++)
                {
                    float* xi = px + b * sb + t * st + h * sh, yo = py + ((b * T + t) * H + h) * d;
                    for (long i = 0; i < d; i += 2)
                    {
                        float x0 = xi[i], x1 = xi[i + 1];
                        float a0 = x0 * c[i], b0 = x1 * s[i];               // x·cos, swap(x)·sin: rounded separately
                        float a1 = x1 * c[i + 1], b1 = x0 * s[i + 1];
                        yo[i] = a0 + b0;
                        yo[i + 1] = a1 + b1;
                    }
                }
            }
        GC.KeepAlive(x); GC.KeepAlive(cos); GC.KeepAlive(sin);
        return y;
    }
}
