// Dequantizing DeepSeek-V3's block-scaled FP8 weights on load (DeepSeek-V3 technical report §3.3.2,
// "fine-grained quantization": weights are scaled per 128×128 block).
//
// The Hugging Face checkpoints store a linear weight W [out, in] as F8_E4M3 next to
// `<name>.weight_scale_inv` S [ceil(out/128), ceil(in/128)] (F32), the inverse of the per-block scale:
//     W_real[i, j] = W_fp8[i, j] × S[i / 128, j / 128]
// (DeepSeek's inference/kernel.py `weight_dequant` does the same on the GPU.)
//
// Shapes: O out features, I in features, Bo = ceil(O / b), Bi = ceil(I / b), b block size (128).
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.IO;

public static class Fp8BlockDequant
{
    /// <summary>DeepSeek-V3's block size for weights.</summary>
    public const int BlockSize = 128;
    /// <summary>The suffix of a weight's inverse-scale tensor: "x.weight" → "x.weight_scale_inv".</summary>
    public const string ScaleSuffix = "_scale_inv";

    /// <summary>Expected scale shape [ceil(O/b), ceil(I/b)] for a weight of shape [O, I].</summary>
    public static long[] ScaleShape(long[] weightShape, int blockSize = BlockSize)
    {
        if (weightShape.Length != 2) throw new WhaleArgumentException("weight shape", weightShape, "must be 2-D [out, in] for block scaling");
        Guard.Positive("blockSize", blockSize);
        return [(weightShape[0] + blockSize - 1) / blockSize, (weightShape[1] + blockSize - 1) / blockSize];
    }

    /// <summary>W [O, I] (any float type, float8 included) × S [Bo, Bi] per block → float32 [O, I].</summary>
    public static Tensor Dequantize(Tensor weight, Tensor scaleInv, int blockSize = BlockSize)
    {
        var expected = ScaleShape(weight.shape, blockSize);
        if (!scaleInv.shape.SequenceEqual(expected))
            throw new WhaleArgumentException("scale_inv shape", scaleInv.shape, $"must be [{string.Join(", ", expected)}] = ceil(weight shape [{string.Join(", ", weight.shape)}] / {blockSize})");
        long o = weight.shape[0], i = weight.shape[1];
        using var scope = NewDisposeScope();
        var s = scaleInv.to_type(ScalarType.Float32).to(weight.device);             // [Bo, Bi]
        var full = s.repeat_interleave(blockSize, 0).repeat_interleave(blockSize, 1) // [Bo·b, Bi·b]
                    .narrow(0, 0, o).narrow(1, 0, i);                                // [O, I]
        return weight.to_type(ScalarType.Float32).mul(full).MoveToOuterDisposeScope(); // [O, I] fp32
    }
}
