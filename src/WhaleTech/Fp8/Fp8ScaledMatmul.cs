// Real FP8 GEMMs: operands stored in libtorch's 1-byte float8 dtypes and multiplied by torch._scaled_mm (cuBLASLt
// FP8 tensor-core GEMM on Hopper, which has twice the bf16 peak rate on H100 per NVIDIA's datasheet — and a
// reference kernel on CPU; no GPU measurement is committed). TorchSharp binds neither the float8 dtypes by name nor _scaled_mm, so the GEMM goes through
// TorchScript (out_dtype as an int, as TorchScript rejects dtype values) and float8 tensors are made with
// `to_type((ScalarType)24 / 23)`.
//
//   C [M, N] = (A_fp8 · B_fp8) · s_A · s_B      A [M, K] row-major, B [K, N] column-major, s_A, s_B per-tensor scales
//
// use_fast_accum = true lets Hopper keep the partial sums in the tensor core's limited-precision accumulator
// (DeepSeek-V3 §3.3.2; the model in Fp8Accumulator.cs); false promotes them. On CPU libtorch 2.10 supports
// per-tensor scales only (row-wise scales are CUDA-only), which is what the "real" recipe uses; DeepSeek-V3's
// 1×128 / 128×128 scales run as one unit-scaled _scaled_mm per K block in Fp8BlockScaledMatmul.
//
// Shapes: A [M, K], B [K, N], C [M, N]; scales are 0-dim float32.
using TorchSharp;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Fp8;

/// <summary>A per-tensor scaled FP8 tensor in real 1-byte storage: x ≈ Data · Scale.</summary>
public sealed record Fp8Stored(Tensor Data, Tensor Scale) : IDisposable
{
    public void Dispose() { Data.Dispose(); Scale.Dispose(); }
}

public static class Fp8ScaledMatmul
{
    const string Script = """
        def scaled_mm(a: Tensor, b: Tensor, scale_a: Tensor, scale_b: Tensor, out_dtype: int, fast_accum: bool) -> Tensor:
            return torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=out_dtype, use_fast_accum=fast_accum)
        """;

    static readonly Lazy<jit.CompilationUnit> Unit = Runtime.TorchScript.CompileOnFirstUse(Script);

    /// <summary>Per-tensor quantization into real float8 storage: exactly the codes and scale of
    /// <see cref="Fp8Quantizer.Quantize"/> (amax / max_fp8, floored; overflow mode of <paramref name="scaling"/>,
    /// saturating by default), stored in 1 byte — as Fp8BlockScaledMatmul.Quantize does for tiles and blocks.</summary>
    public static Fp8Stored Quantize(Tensor x, Fp8Format format, Fp8Scaling? scaling = null)
    {
        using var scope = NewDisposeScope();
        var q = Fp8Quantizer.Quantize(x, format, Fp8Granularity.PerTensor, scaling);      // codes [*] float32, exact FP8 values; scale []
        var data = q.Codes.to_type(format.LibTorchDType);                                  // [*] 1 byte each, lossless
        return new Fp8Stored(data.MoveToOuterDisposeScope(), q.Scales.MoveToOuterDisposeScope());
    }

    /// <summary>C = (a · b) · scaleA · scaleB with a [M, K] and b [K, N] float8 (b column-major: pass Wᵀ of a row-major W).</summary>
    public static Tensor Apply(Tensor a, Tensor b, Tensor scaleA, Tensor scaleB, ScalarType outDtype = ScalarType.Float32, bool fastAccum = false)
    {
        if (a.dim() != 2 || b.dim() != 2 || a.shape[1] != b.shape[0])
            throw new WhaleArgumentException("a, b", $"[{string.Join(", ", a.shape)}] · [{string.Join(", ", b.shape)}]", "must be [M, K] · [K, N]");
        if (!IsFloat8(a.dtype) || !IsFloat8(b.dtype))
            throw new WhaleArgumentException("a, b dtypes", $"{(int)a.dtype}, {(int)b.dtype}", "must be float8 (ScalarType 24 = e4m3fn or 23 = e5m2); quantize with Fp8ScaledMatmul.Quantize");
        if (a.shape[1] % 16 != 0 || b.shape[1] % 16 != 0 || a.shape[0] % 16 != 0)
            throw new WhaleArgumentException("GEMM sizes", $"M = {a.shape[0]}, K = {a.shape[1]}, N = {b.shape[1]}", "must be multiples of 16 for torch._scaled_mm");
        return Invoke(a, b.stride(0) == 1 ? b : b.t().contiguous().t(), scaleA, scaleB, outDtype, fastAccum);
    }

    /// <summary>torch._scaled_mm without the checks, for callers that have made the operands valid (a row-major
    /// float8 [M, K], b column-major float8 [K, N], K and N multiples of 16): Fp8BlockScaledMatmul's K blocks.</summary>
    internal static Tensor Invoke(Tensor a, Tensor b, Tensor scaleA, Tensor scaleB, ScalarType outDtype, bool fastAccum)
        => (Tensor)Unit.Value.invoke("scaled_mm", a, b, scaleA, scaleB, (int)outDtype, fastAccum);

    static bool IsFloat8(ScalarType t) => (int)t is 23 or 24;
}
