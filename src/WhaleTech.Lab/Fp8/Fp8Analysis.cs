// `whale fp8 analyze <model.safetensors>`: the FP8 lab's report for every floating-point tensor of a real
// checkpoint: amax, SQNR and flushed-to-zero share under E4M3 with per-tensor, 1×128-tile and 128×128-block
// scales (DeepSeek-V3 §3.3.2), plus an optional round-trip file where every floating tensor is replaced by
// its FP8-quantized-then-dequantized values (same names, dtypes and shapes) to measure the model's quality.
//
// Shapes: a tensor of any rank is viewed as 2-D [R, C] (leading dims flattened), as in Fp8Quantizer.
using TorchSharp;
using WhaleTech.IO;
using static TorchSharp.torch;

using WhaleTech.Fp8;

namespace WhaleTech.Lab.Fp8;

/// <summary>One tensor under one granularity.</summary>
public sealed record TensorFp8Report(string Name, string DType, long[] Shape, double Amax, string Granularity, double SqnrDb, double FlushedShare);

public static class Fp8Analysis
{
    public static readonly Fp8Granularity[] Granularities = [Fp8Granularity.PerTensor, Fp8Granularity.Tile, Fp8Granularity.Block];

    static bool IsFloat(ScalarType t) => t is ScalarType.Float32 or ScalarType.Float64 or ScalarType.Float16 or ScalarType.BFloat16
        || (int)t == Fp8Format.E4M3.LibTorchScalarType || (int)t == Fp8Format.E5M2.LibTorchScalarType;

    /// <summary>Reports every floating tensor of <paramref name="path"/> (non-float tensors are skipped).</summary>
    public static List<TensorFp8Report> Analyze(string path, Fp8Format? format = null, Action<string>? progress = null)
    {
        format ??= Fp8Format.E4M3;
        var file = SafeTensorsFile.Open(Runtime.Guard.ExistingFile("model", path));
        var rows = new List<TensorFp8Report>();
        foreach (var info in file.Tensors)
        {
            using var scope = NewDisposeScope();
            var t = file.ToTensor(info.Name);
            if (!IsFloat(t.dtype) || t.numel() == 0) continue;
            progress?.Invoke(info.Name);
            var x = t.dim() == 0 ? t.reshape(1).to_type(ScalarType.Float32) : t.to_type(ScalarType.Float32);
            double amax = x.abs().max().item<float>();
            foreach (var g in Granularities)
            {
                using var inner = NewDisposeScope();
                var xhat = Fp8Quantizer.FakeQuantize(x, format, g);
                rows.Add(new TensorFp8Report(info.Name, t.dtype.ToString(), t.shape, amax, Fp8Granularities.Name(g), Fp8Lab.Sqnr(x, xhat), Fp8Lab.FlushedShare(x, xhat)));
            }
        }
        return rows;
    }

    /// <summary>Writes a copy of <paramref name="path"/> whose floating tensors are FP8 round-tripped with
    /// <paramref name="granularity"/> (default: 128×128 blocks for matrices, 1×128 tiles for vectors).</summary>
    public static void WriteRoundTrip(string path, string output, Fp8Format? format = null, Fp8Granularity? granularity = null)
    {
        format ??= Fp8Format.E4M3;
        var file = SafeTensorsFile.Open(Runtime.Guard.ExistingFile("model", path));
        using var scope = NewDisposeScope();
        var tensors = new List<(string, Tensor)>();
        foreach (var info in file.Tensors)
        {
            var t = file.ToTensor(info.Name);
            if (IsFloat(t.dtype) && t.numel() > 0 && t.dim() > 0)
            {
                var g = granularity ?? (t.dim() >= 2 ? Fp8Granularity.Block : Fp8Granularity.Tile);
                t = Fp8Quantizer.FakeQuantize(t.to_type(ScalarType.Float32), format, g).to_type(t.dtype);
            }
            tensors.Add((info.Name, t));
        }
        SafeTensorsWriter.Write(output, tensors, file.Metadata);
    }
}
