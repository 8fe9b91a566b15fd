// torch.nn.functional.scaled_dot_product_attention with an explicit softmax scale and grouped (multi-query) keys,
// reached through TorchScript: TorchSharp 0.107's binding has neither `scale` nor `enable_gqa`, and MLA needs both
// (its scale is 1/sqrt(Dn + Dr) · mscale², not 1/sqrt(key width), and its absorbed form is multi-query attention
// with ONE (Dc+Dr)-wide key head and ONE Dc-wide value head). libtorch picks the fused kernel it has for the device
// and shapes (flash / memory-efficient / math); on CPU the result equals the explicit matmul–softmax path.
//
// Shapes: q [B, H, T, Dk], k [B, Hkv, S, Dk], v [B, Hkv, S, Dv], allowed [B, 1, T, S] bool → out [B, H, T, Dv].
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Attention;

public static class ScaledDotProductAttention
{
    const string Script = """
        def sdpa(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, scale: float) -> Tensor:
            return torch.scaled_dot_product_attention(q, k, v, allowed, 0.0, False, scale=scale, enable_gqa=True)
        """;

    static readonly Lazy<jit.CompilationUnit> Unit = Runtime.TorchScript.CompileOnFirstUse(Script);

    /// <summary>softmax(q·kᵀ · scale, masked where <paramref name="allowed"/> is false) · v, with Hkv dividing H.</summary>
    public static Tensor Apply(Tensor q, Tensor k, Tensor v, Tensor allowed, double scale)
    {
        if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4 || q.shape[1] % k.shape[1] != 0 || q.shape[^1] != k.shape[^1])
            throw new Runtime.WhaleArgumentException("q, k, v", $"[{string.Join(", ", q.shape)}], [{string.Join(", ", k.shape)}], [{string.Join(", ", v.shape)}]",
                "must be [B, H, T, Dk], [B, Hkv, S, Dk], [B, Hkv, S, Dv] with Hkv dividing H");
        if (allowed.dtype != ScalarType.Bool) throw new Runtime.WhaleArgumentException("allowed", allowed.dtype, "must be a bool mask (true = may attend)");
        return (Tensor)Unit.Value.invoke("sdpa", q, k, v, allowed, scale);
    }
}
