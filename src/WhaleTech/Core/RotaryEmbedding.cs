// Rotary position embedding (Su et al. 2021, RoFormer eq. 34) in DeepSeek's convention — rotating
// *interleaved* pairs (x0,x1), (x2,x3), … as DeepSeek-V3's inference/model.py does with complex numbers
// — with YaRN context extension (Peng et al. 2023, §3.2 "NTK-by-parts" and eq. 22 mscale), exactly as
// DeepSeek-V2 §2.1.3 / Appendix and HF DeepseekV3 compute it.
//
//   θ_i = base^(−2i/d)                      i = 0 … d/2−1
//   YaRN: θ_i' = θ_i/s · (1 − γ_i) + θ_i · γ_i,   γ_i = 1 − ramp(i; low, high)   (s = factor)
//   low/high = correction dims of beta_fast/beta_slow rotations over original_max_position_embeddings
//   cos/sin are multiplied by the attention factor mscale(s, mscale)/mscale(s, mscale_all_dim) (HF).
//   At factor 1, YaRN is plain RoPE (tested).
//
// Computed as x·cos + swap(x)·(±sin) with interleaved tables cos = [c0, c0, c1, c1, …], ±sin = [−s0, s0, −s1, s1, …]
// and swap(x) = [x1, x0, x3, x2, …]: four kernels instead of ~20 ops, the same roundings as x0·c − x1·s and
// x0·s + x1·c (a + (−b) is a − b exactly; the odd sum only swaps its operands). The model gathers the tables at
// the step's positions once per forward (Tables → AttentionContext.Rotary) for all layers.
//
// Shapes: P positions, R = d/2 rotation pairs; x [..., d] with positions broadcast over heads.
using TorchSharp;
using WhaleTech.Attention;
using static TorchSharp.torch;

namespace WhaleTech.Core;

/// <summary>The rotation tables of one <see cref="RotaryEmbedding"/> gathered at a step's positions: cos and ±sin [B, T, d] fp32.</summary>
public sealed record RotaryTables(RotaryEmbedding Owner, Tensor Cos, Tensor Sin);

/// <summary>Not a Module on purpose: its tables hold no weights and must stay fp32 on any model.to(dtype).</summary>
public sealed class RotaryEmbedding : IDisposable
{
    // [P, d] fp32 interleaved tables (cos at 2i and 2i+1; −sin at 2i, +sin at 2i+1). Deliberately *not* registered
    // as buffers: model.to(bfloat16) must not round them (bf16 angles lose RoPE precision at long positions).
    // They follow the input's device lazily.
    private Tensor cos_cached;
    private Tensor sin_cached;
    public int Dim { get; }
    public int MaxPositions { get; }

    public RotaryEmbedding(int dim, int maxPositions, double theta, RopeScaling? scaling)
    {
        if (dim <= 0 || dim % 2 != 0) throw new Runtime.WhaleArgumentException("rope dim", dim, "must be a positive even number");
        Dim = dim;
        MaxPositions = Runtime.Guard.Positive("max_position_embeddings", maxPositions);
        var invFreq = InverseFrequencies(dim, theta, scaling);                         // [R] fp64
        double attentionFactor = scaling is null ? 1.0 : YarnMscale(scaling.Factor, scaling.Mscale) / YarnMscale(scaling.Factor, scaling.MscaleAllDim);
        var t = torch.arange(maxPositions, dtype: ScalarType.Float64);                 // [P]
        var angles = torch.outer(t, invFreq);                                          // [P, R]
        using var cos = (angles.cos() * attentionFactor).to_type(ScalarType.Float32);  // [P, R]
        using var sin = (angles.sin() * attentionFactor).to_type(ScalarType.Float32);
        cos_cached = torch.stack([cos, cos], -1).reshape(maxPositions, dim).DetachFromDisposeScope();   // [P, d]
        sin_cached = torch.stack([-sin, sin], -1).reshape(maxPositions, dim).DetachFromDisposeScope();  // [P, d]
    }

    public void Dispose() { cos_cached.Dispose(); sin_cached.Dispose(); }

    /// <summary>The cos and sin tables [P, R] (fp32, attention factor included), for parity checks; owned by this object.</summary>
    public (Tensor Cos, Tensor Sin) FullTables => (cos_cached, sin_cached);

    /// <summary>YaRN's attention temperature: 0.1·m·ln(s) + 1 for s &gt; 1 (YaRN eq. 22, DeepSeek's yarn_get_mscale).</summary>
    public static double YarnMscale(double factor, double mscale) => factor <= 1 ? 1.0 : 0.1 * mscale * Math.Log(factor) + 1.0;

    /// <summary>θ_i, with YaRN's NTK-by-parts blend when scaling is given.</summary>
    public static Tensor InverseFrequencies(int dim, double theta, RopeScaling? scaling)
    {
        var exponents = torch.arange(0, dim, 2, dtype: ScalarType.Float64) / dim;     // [R]
        var invFreq = 1.0 / torch.pow(theta, exponents);
        if (scaling is null || scaling.Factor == 1.0) return invFreq;
        double CorrectionDim(double rotations) =>
            dim * Math.Log(scaling.OriginalMaxPositionEmbeddings / (rotations * 2 * Math.PI)) / (2 * Math.Log(theta));
        double low = Math.Max(Math.Floor(CorrectionDim(scaling.BetaFast)), 0);
        double high = Math.Min(Math.Ceiling(CorrectionDim(scaling.BetaSlow)), dim - 1);
        if (low == high) high += 0.001;
        var ramp = ((torch.arange(dim / 2, dtype: ScalarType.Float64) - low) / (high - low)).clamp(0, 1); // [R]
        var extrapolate = 1 - ramp;                                                    // γ_i: 1 = keep θ_i (high freq)
        return invFreq / scaling.Factor * (1 - extrapolate) + invFreq * extrapolate;
    }

    /// <summary>Rotates interleaved pairs of <paramref name="x"/> [B, T, ..., d] at <paramref name="positions"/> [B, T].</summary>
    public Tensor Apply(Tensor x, Tensor positions)
    {
        using var scope = torch.NewDisposeScope();
        var t = Tables(positions);
        return Rotate(x, t.Cos, t.Sin).MoveToOuterDisposeScope();
    }

    /// <summary>Rotates <paramref name="x"/> [B, T, ..., d] at the context's positions, with the tables the model
    /// gathered once for this forward when it did (<see cref="AttentionContext.Rotary"/>).</summary>
    public Tensor Apply(Tensor x, AttentionContext ctx)
        => ctx.Rotary is { } t && ReferenceEquals(t.Owner, this) ? Rotate(x, t.Cos, t.Sin) : Apply(x, ctx.Positions);

    /// <summary>The tables at <paramref name="positions"/> [B, T]: cos and ±sin [B, T, d] fp32 on positions' device.</summary>
    public RotaryTables Tables(Tensor positions)
    {
        if (cos_cached.device_type != positions.device_type || cos_cached.device_index != positions.device_index)
        {
            var (c, s) = (cos_cached.to(positions.device).DetachFromDisposeScope(), sin_cached.to(positions.device).DetachFromDisposeScope());
            cos_cached.Dispose(); sin_cached.Dispose();
            (cos_cached, sin_cached) = (c, s);
        }
        long B = positions.shape[0], T = positions.shape[1];
        using var flat = positions.reshape(-1);
        return new RotaryTables(this, cos_cached.index_select(0, flat).view(B, T, Dim), sin_cached.index_select(0, flat).view(B, T, Dim));
    }

    /// <summary>x·cos + swap(x)·(±sin) for x [B, T, ..., d] and tables [B, T, d] (broadcast over the middle dims), fp32 math.</summary>
    public Tensor Rotate(Tensor x, Tensor cos, Tensor sin)
    {
        if (RotaryKernel.Rotate(x, cos, sin) is { } fast) return fast;                      // CPU fp32 inference: one pass
        using var scope = torch.NewDisposeScope();
        for (long extra = x.dim() - 3; extra > 0; extra--) { cos = cos.unsqueeze(2); sin = sin.unsqueeze(2); } // broadcast over heads
        var xf = x.dtype == ScalarType.Float32 ? x : x.to_type(ScalarType.Float32);
        var swapped = xf.reshape([.. x.shape[..^1], Dim / 2, 2]).flip(-1).view(x.shape);  // [x1, x0, x3, x2, …]
        var rotated = (xf * cos).add_(swapped.mul_(sin));                                  // [..., d]
        return (x.dtype == ScalarType.Float32 ? rotated : rotated.to_type(x.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>Checks positions are inside the precomputed table (a clear error instead of an index crash).</summary>
    public void CheckPositions(long maxPositionUsed)
    {
        if (maxPositionUsed >= MaxPositions)
            throw new Runtime.WhaleArgumentException("position", maxPositionUsed, $"must be < max_position_embeddings = {MaxPositions}");
    }
}
