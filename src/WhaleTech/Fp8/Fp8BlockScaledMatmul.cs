// Block-scaled real FP8 GEMM: DeepSeek-V3's fine-grained quantization (§3.3.2, Figure 7) on real 1-byte float8
// operands. A (activations, output gradients) carries one scale per 1×t tile along K, B (a weight) one scale per
// t×t block — or, in Wgrad, one per 1×t tile as well. DeepSeek multiplies such operands on the FP8 tensor cores
// in K chunks of N_C = t = 128 elements, "promotes" each chunk's partial sum to FP32 registers on the CUDA cores
// and applies the two scales there, at promotion (Figure 7b). This file is that algorithm, one chunk at a time:
//
//   for each K block g of t elements:
//       P_g  = A_g · B_gᵀ                       torch._scaled_mm on the FP8 codes, unit scales, float32 out
//       C   += P_g ⊙ (sA[:, g] ⊗ sB[:, g])      promotion: the scales applied and accumulated in float32
//
// so C = Σ_g (A_g·B_gᵀ) ⊙ (sA[:, g] ⊗ sB[:, g]). Fp8Accumulator.GroupScaledGemm models the same sum in float32 with a
// limited-precision partial; the simulated `deepseek-v3` recipe multiplies the dequantized values (codes · scales)
// in one float32 GEMM. With the same codes and scales (Quantize below uses Fp8Quantizer's scale rule) all three
// agree up to float32 summation order: |C_real − C_sim| ≤ (2K + O(G))·2^-24·Σ_k |a_k·sA||b_k·sB| (tested).
//
// What runs where: every chunk is one _scaled_mm call (libtorch's reference kernel on CPU, cuBLASLt FP8 on CUDA;
// the code is device-agnostic), plus one float32 multiply-add over C per chunk. On Hopper a native block-scaled
// kernel (DeepGEMM, or a _scaled_mm that takes 1×128 / 128×128 scales) does the promotion inside the kernel and is
// much faster; this path is the readable, testable version of the same numbers.
//
// Sizes: cuBLASLt's _scaled_mm wants K and N multiples of 16. A ragged last K block is zero-padded to t (the
// quantizer's convention: the padded zeros do not change a tile's amax, and zero codes add nothing), and M and N
// are zero-padded to multiples of 16 in the same 1-byte copy that lays the operands out in K blocks (the padded
// rows of C are dropped), so any M, N, K works, on every device alike. What cannot work is a tile size t that is
// not a multiple of 16 (each K block is one _scaled_mm): a WhaleArgumentException.
//
// Shapes: A [M, K] with scales [M, G] (1×t tiles); B [N, K] with scales [N, G] (1×t tiles) or [⌈N/t⌉, G] (t×t
// blocks); G = ⌈K/t⌉ K blocks; C = A·Bᵀ [M, N] float32.
using TorchSharp;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Fp8;

/// <summary>A fine-grained scaled FP8 tensor in real 1-byte storage: x ≈ Data ⊙ scales broadcast over their tiles
/// or blocks. Data [R, C] float8; Scales [R, ⌈C/t⌉] (Tile) or [⌈R/t⌉, ⌈C/t⌉] (Block), float32.</summary>
public sealed record Fp8BlockStored(Tensor Data, Tensor Scales, Fp8Format Format, Fp8Granularity Granularity, int TileSize) : IDisposable
{
    /// <summary>Float32 values data · scale: bit-identical to <see cref="Fp8Tensor.Dequantize"/> of the same codes.</summary>
    public Tensor Dequantize() => Fp8Quantizer.ApplyScales(Data.to_type(ScalarType.Float32), Scales, Granularity, TileSize, divide: false);

    /// <summary>Wᵀ of a block-scaled W: a t×t block grid is the same for the transpose, so no requantization (views only).</summary>
    public Fp8BlockStored Transposed()
    {
        if (Granularity != Fp8Granularity.Block)
            throw new WhaleArgumentException("granularity", Granularity, "must be Block to transpose without requantizing (1×t tiles would become t×1)");
        return this with { Data = Data.t(), Scales = Scales.t() };
    }

    /// <summary>Bytes held: 1 per element of Data plus 4 per scale.</summary>
    public long Bytes => Data.NumberOfElements * Data.ElementSize + Scales.NumberOfElements * Scales.ElementSize;

    public void Dispose() { Data.Dispose(); Scales.Dispose(); }
}

public static class Fp8BlockScaledMatmul
{
    /// <summary>Quantizes <paramref name="x"/> [R, C] into real float8 with 1×t tile or t×t block scales: exactly the codes
    /// and scales of <see cref="Fp8Quantizer.Quantize"/> (same scale rule, floor and power-of-two option), stored in 1 byte.</summary>
    public static Fp8BlockStored Quantize(Tensor x, Fp8Format format, Fp8Granularity granularity, Fp8Scaling? scaling = null)
    {
        if (granularity != Fp8Granularity.Tile && granularity != Fp8Granularity.Block)
            throw new WhaleArgumentException("granularity", granularity, "must be Tile (1×t) or Block (t×t); per-tensor scales go through Fp8ScaledMatmul");
        if (x.dim() != 2) throw new WhaleArgumentException("x.shape", x.shape, "must be 2-D [R, C]");
        scaling ??= Fp8Scaling.Default;
        using var scope = NewDisposeScope();
        var q = Fp8Quantizer.Quantize(x, format, granularity, scaling);                  // codes [R, C] float32, exact FP8 values
        var data = q.Codes.to_type(format.LibTorchDType);                                 // [R, C] 1 byte each, lossless
        return new Fp8BlockStored(data.MoveToOuterDisposeScope(), q.Scales.MoveToOuterDisposeScope(), format, granularity, scaling.TileSize);
    }

    /// <summary>C = A·Bᵀ [M, N] in float32 from A [M, K] in 1×t tiles and B [N, K] in t×t blocks or 1×t tiles, one
    /// _scaled_mm per K block with the scales applied at promotion (DeepSeek-V3 Figure 7b).</summary>
    public static Tensor Apply(Fp8BlockStored a, Fp8BlockStored b, bool fastAccum = false)
    {
        Check(a, b);
        using var scope = NewDisposeScope();
        int t = a.TileSize;
        long m = a.Data.shape[0], n = b.Data.shape[0], groups = a.Scales.shape[1];
        var sA = a.Scales;                                                                 // [M, G]
        var sB = b.Granularity == Fp8Granularity.Block
            ? b.Scales.repeat_interleave(t, 0)[..(int)n]                                   // [N, G] block scale of each row
            : b.Scales;                                                                    // [N, G]
        var aBlocks = KBlocks(a.Data, t, groups);                                          // [G, M16, t] row-major blocks
        var bBlocks = KBlocks(b.Data, t, groups);                                          // [G, N16, t]
        var one = torch.ones([], ScalarType.Float32, device: a.Data.device);              // unit per-tensor scale
        var c = torch.zeros(m, n, ScalarType.Float32, device: a.Data.device);             // [M, N] float32 accumulator
        for (long g = 0; g < groups; g++)
        {
            using var step = NewDisposeScope();
            var partial = Fp8ScaledMatmul.Invoke(aBlocks[g], bBlocks[g].t(), one, one, ScalarType.Float32, fastAccum)  // [M16, N16] codes only
                [..(int)m, ..(int)n];                                                                                   // [M, N]
            c.add_(partial * sA[.., g].unsqueeze(1) * sB[.., g].unsqueeze(0));            // promotion with the scales, in float32
        }
        return c.MoveToOuterDisposeScope();
    }

    /// <summary>[R, K] float8 → [G, R16, t] contiguous, R16 = R rounded up to a multiple of 16: K zero-padded to G·t and
    /// R to R16 (code 0 is +0 in both formats), one 1-byte copy. Block g is then a row-major [R16, t] matrix and its
    /// transpose the column-major operand _scaled_mm wants.</summary>
    static Tensor KBlocks(Tensor data, int t, long groups)
    {
        long r = data.shape[0], k = data.shape[1], r16 = (r + 15) / 16 * 16;
        var padded = k == groups * t && r == r16 ? data : nn.functional.pad(data, [0, groups * t - k, 0, r16 - r]);  // [R16, G·t]
        return padded.reshape(r16, groups, t).permute(1, 0, 2).contiguous();                                        // [G, R16, t]
    }

    static void Check(Fp8BlockStored a, Fp8BlockStored b)
    {
        if (a.Granularity != Fp8Granularity.Tile)
            throw new WhaleArgumentException("a granularity", a.Granularity, "must be Tile: A carries one scale per 1×t tile along K");
        if (b.Granularity != Fp8Granularity.Tile && b.Granularity != Fp8Granularity.Block)
            throw new WhaleArgumentException("b granularity", b.Granularity, "must be Block (a t×t-blocked weight) or Tile (1×t tiles along K)");
        if (a.TileSize != b.TileSize)
            throw new WhaleArgumentException("tile sizes", $"{a.TileSize} and {b.TileSize}", "must be equal: the K blocks of A and B must line up");
        if (a.TileSize % 16 != 0)
            throw new WhaleArgumentException("TileSize", $"{a.TileSize} (GEMM M = {a.Data.shape[0]}, K = {a.Data.shape[1]}, N = {b.Data.shape[0]})",
                "must be a multiple of 16: each K block of t elements is one torch._scaled_mm, whose K must be a multiple of 16 (DeepSeek-V3 uses 128; M, N and K themselves may be any size)");
        if (a.Data.dim() != 2 || b.Data.dim() != 2 || a.Data.shape[1] != b.Data.shape[1])
            throw new WhaleArgumentException("a, b shapes", $"[{string.Join(", ", a.Data.shape)}] · [{string.Join(", ", b.Data.shape)}]ᵀ", "must be A [M, K] and B [N, K] with the same K");
        long groups = (a.Data.shape[1] + a.TileSize - 1) / a.TileSize;
        if (a.Scales.shape[0] != a.Data.shape[0] || a.Scales.shape[1] != groups)
            throw new WhaleArgumentException("a scales", a.Scales.shape, $"must be [M, ⌈K/t⌉] = [{a.Data.shape[0]}, {groups}]");
        long bRows = b.Granularity == Fp8Granularity.Block ? (b.Data.shape[0] + b.TileSize - 1) / b.TileSize : b.Data.shape[0];
        if (b.Scales.shape[0] != bRows || b.Scales.shape[1] != groups)
            throw new WhaleArgumentException("b scales", b.Scales.shape, $"must be [{bRows}, {groups}] for {b.Granularity} scales of B [N, K]");
    }
}
