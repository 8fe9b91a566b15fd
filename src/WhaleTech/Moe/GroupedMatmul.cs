// torch._grouped_mm reached through TorchScript: TorchSharp 0.107 binds no grouped GEMM, but libtorch has one
// (CUTLASS grouped GEMM on Hopper; a loop of matmuls on CPU), and torch.jit.compile + invoke can call any aten op.
//
//   out[rows of group g] = a[rows of group g] · b[g]        a [M, K] rows sorted by group, b [G, K, N], out [M, N]
//   offs [G] int32: the END row of each group (cumulative counts); an empty group repeats the previous offset.
//
// It is differentiable (autograd records the aten op as usual), so the MoE layer trains through it.
// The script is compiled once, on first use; the dispatch tests run it on CPU (libtorch 2.10 has the op there).
// Shapes: M sorted rows (N·K token–expert pairs), K in-features, N out-features, G groups (experts).
using TorchSharp;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Moe;

public static class GroupedMatmul
{
    const string Script = """
        def grouped_mm(a: Tensor, b: Tensor, offs: Tensor) -> Tensor:
            return torch._grouped_mm(a, b, offs=offs)
        """;

    static readonly Lazy<jit.CompilationUnit> Unit = Runtime.TorchScript.CompileOnFirstUse(Script);

    /// <summary>out [M, N] where rows offs[g−1]..offs[g] of <paramref name="a"/> [M, K] are multiplied by <paramref name="b"/>[g] [K, N].</summary>
    public static Tensor Apply(Tensor a, Tensor b, Tensor offs)
    {
        if (a.dim() != 2 || b.dim() != 3 || a.shape[1] != b.shape[1])
            throw new WhaleArgumentException("a, b", $"[{string.Join(", ", a.shape)}], [{string.Join(", ", b.shape)}]", "must be a [M, K] and b [G, K, N]");
        if (offs.dim() != 1 || offs.shape[0] != b.shape[0] || offs.dtype != ScalarType.Int32)
            throw new WhaleArgumentException("offs", $"{offs.dtype} [{string.Join(", ", offs.shape)}]", $"must be int32 [G = {b.shape[0]}] cumulative row counts");
        long align = Math.Max(1, 16 / a.ElementSize);   // torch._grouped_mm needs 16-byte aligned strides
        if (a.shape[1] % align != 0 || b.shape[2] % align != 0)
            throw new WhaleArgumentException("grouped GEMM sizes", $"K = {a.shape[1]}, N = {b.shape[2]}", $"must be multiples of {align} for {a.dtype} (torch._grouped_mm needs 16-byte aligned rows); use the Sorted dispatch");
        return (Tensor)Unit.Value.invoke("grouped_mm", a, b, offs);
    }

    /// <summary>The int32 end offsets [G] of groups with <paramref name="counts"/> rows each.</summary>
    public static Tensor Offsets(long[] counts, Device device)
    {
        var ends = new int[counts.Length];
        long sum = 0;
        for (int g = 0; g < counts.Length; g++) { sum += counts[g]; ends[g] = checked((int)sum); }
        return torch.tensor(ends, dtype: ScalarType.Int32, device: device);
    }
}
