// A model of the FP8 tensor-core accumulator of NVIDIA H800/H100 (DeepSeek-V3 §3.3.2 "Increasing
// accumulation precision", §3.5.2): the running sum of an FP8 GEMM keeps only about 14 significant
// mantissa bits, so for long inner dimensions K the error grows (DeepSeek measured ~2% max relative error
// at K = 4096). DeepSeek's fix: every N_C = 128 elements, the partial sum is promoted (added) into a full
// float32 accumulator on the CUDA cores.
//
// Model (one K step at a time):
//   partial ← round_p(partial + a_k·b_k)        round_p: keep p fraction bits (default 14), truncating
//                                                (the aligned, right-shifted bits are dropped)
//   every N_C steps: acc32 ← acc32 + partial; partial ← 0      (N_C = 0: never promote)
//   result = (acc32 + partial) · scale_a · scale_b
// The GEMM runs on the unscaled FP8 codes (products of two FP8 values are exact in float32) and the
// scales are applied after, so FP8 rounding error and accumulation error can be measured apart.
//
// With fine-grained scales (§3.3.2: "the per-group scaling factors … multiplied on the CUDA Cores as the
// dequantization process") the promotion is also where the scales enter: N_C = the group size t = 128, so
//   every group g of t elements: acc32 ← acc32 + partial_g · s_A[m, g] · s_B[⌊n/t⌋, g];  partial ← 0
// with A in 1×t tiles along K (activations) and B in t×t blocks (weights): GroupScaledGemm.
//
// Shapes: A codes [M, K], B codes [N, K]; result C = A·Bᵀ [M, N]; G = ⌈K/t⌉ groups.
using TorchSharp;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Fp8;

/// <param name="MantissaBits">Fraction bits the accumulator keeps (14 per DeepSeek-V3; 23 = float32).</param>
/// <param name="PromotionInterval">N_C: elements between promotions to float32 (0 = never).</param>
/// <param name="Rounding">How the dropped bits are handled (truncation by default).</param>
public sealed record Fp8Accumulator(int MantissaBits = 14, int PromotionInterval = 128, Rounding Rounding = Rounding.TowardZero)
{
    /// <summary>C = A·Bᵀ on codes with the limited accumulator, then times the (broadcastable) scales.</summary>
    public Tensor Gemm(Tensor aCodes, Tensor bCodes, Tensor? aScale = null, Tensor? bScale = null)
    {
        Guard.InRange("MantissaBits", MantissaBits, 1, 23);
        Guard.NonNegative("PromotionInterval", PromotionInterval);
        if (aCodes.dim() != 2 || bCodes.dim() != 2 || aCodes.shape[1] != bCodes.shape[1])
            throw new WhaleArgumentException("shapes", $"[{string.Join(",", aCodes.shape)}] x [{string.Join(",", bCodes.shape)}]ᵀ", "must be A [M, K] and B [N, K] with the same K");
        using var scope = NewDisposeScope();
        long k = aCodes.shape[1];
        var a = aCodes.to_type(ScalarType.Float32);
        var b = bCodes.to_type(ScalarType.Float32);
        var acc = torch.zeros(a.shape[0], b.shape[0], device: a.device);      // [M, N] float32 accumulator
        var partial = torch.zeros_like(acc);                                   // [M, N] limited-precision
        for (long i = 0; i < k; i++)
        {
            using var step = NewDisposeScope();
            var product = a[.., i].unsqueeze(1) * b[.., i].unsqueeze(0);       // [M, N], exact
            var next = Fp8Cast.RoundToGrid(partial + product, MantissaBits, -126, Rounding);
            partial.copy_(next);
            if (PromotionInterval > 0 && (i + 1) % PromotionInterval == 0)
            {
                acc.add_(partial);
                partial.zero_();
            }
        }
        var c = acc + partial;
        if (aScale is not null) c = c * aScale;
        if (bScale is not null) c = c * bScale;
        return c.MoveToOuterDisposeScope();
    }

    /// <summary>C = A·Bᵀ [M, N] from fine-grained FP8 operands: A in 1×t tiles along K, B in t×t blocks. Each K group of
    /// t elements is summed in the limited accumulator and promoted to float32 with its two scales applied (N_C = t).</summary>
    public Tensor GroupScaledGemm(Fp8Tensor a, Fp8Tensor b)
    {
        Guard.InRange("MantissaBits", MantissaBits, 1, 23);
        if (a.Granularity != Fp8Granularity.Tile || b.Granularity != Fp8Granularity.Block || a.TileSize != b.TileSize)
            throw new WhaleArgumentException("operands", $"{a.Granularity}/{b.Granularity}", "must be A in 1×t tiles and B in t×t blocks of the same t");
        int t = a.TileSize;
        if (PromotionInterval != t)
            throw new WhaleArgumentException("PromotionInterval", PromotionInterval, $"must equal the group size t = {t}: scales are applied when a group is promoted");
        if (a.Codes.dim() != 2 || b.Codes.dim() != 2 || a.Codes.shape[1] != b.Codes.shape[1])
            throw new WhaleArgumentException("shapes", $"[{string.Join(",", a.Codes.shape)}] x [{string.Join(",", b.Codes.shape)}]ᵀ", "must be A [M, K] and B [N, K] with the same K");
        using var scope = NewDisposeScope();
        long k = a.Codes.shape[1], n = b.Codes.shape[0];
        var ac = a.Codes.to_type(ScalarType.Float32);                                          // [M, K]
        var bc = b.Codes.to_type(ScalarType.Float32);                                          // [N, K]
        var sB = b.Scales.repeat_interleave(t, 0)[..(int)n];                                   // [N, G] block scale of each row
        var acc = torch.zeros(ac.shape[0], n, device: ac.device);                              // [M, N] float32
        for (long g = 0; g * t < k; g++)
        {
            using var group = NewDisposeScope();
            var partial = torch.zeros_like(acc);                                               // [M, N] limited precision
            for (long i = g * t; i < Math.Min(k, (g + 1) * t); i++)
            {
                var product = ac[.., i].unsqueeze(1) * bc[.., i].unsqueeze(0);                 // [M, N], exact
                partial = Fp8Cast.RoundToGrid(partial + product, MantissaBits, -126, Rounding);
            }
            acc.add_(partial * a.Scales[.., g].unsqueeze(1) * sB[.., g].unsqueeze(0));          // promotion: scales on CUDA cores
        }
        return acc.MoveToOuterDisposeScope();
    }

    /// <summary>Relative Frobenius error ‖C_sim − C_exact‖ / ‖C_exact‖ of a K-long GEMM on random E4M3 codes
    /// (per-tensor scaled Gaussians), against an exact float64 GEMM of the same codes.</summary>
    public double RelativeError(long k, long m = 16, long n = 16, long seed = 0)
    {
        Guard.Positive("k", k);
        using var scope = NewDisposeScope();
        var gen = new torch.Generator((ulong)seed);
        using var qa = Fp8Quantizer.Quantize(torch.randn(m, k, generator: gen), Fp8Format.E4M3, Fp8Granularity.PerTensor);
        using var qb = Fp8Quantizer.Quantize(torch.randn(n, k, generator: gen), Fp8Format.E4M3, Fp8Granularity.PerTensor);
        var exact = qa.Codes.to_type(ScalarType.Float64).matmul(qb.Codes.to_type(ScalarType.Float64).t());
        var sim = Gemm(qa.Codes, qb.Codes).to_type(ScalarType.Float64);
        return ((sim - exact).norm() / exact.norm()).item<double>();
    }
}
