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
// Shapes: P positions, R = d/2 rotation pairs; x [..., d] with positions broadcast over heads.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Core;

/// <summary>Not a Module on purpose: its tables hold no weights and must stay fp32 on any model.to(dtype).</summary>
public sealed class RotaryEmbedding : IDisposable
{
    // [P, R] fp32 tables. Deliberately *not* registered as buffers: model.to(bfloat16) must not round
    // them (bf16 angles lose RoPE precision at long positions). They follow the input's device lazily.
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
        cos_cached = (angles.cos() * attentionFactor).to_type(ScalarType.Float32);
        sin_cached = (angles.sin() * attentionFactor).to_type(ScalarType.Float32);
    }

    public void Dispose() { cos_cached.Dispose(); sin_cached.Dispose(); }

    /// <summary>The cos and sin tables [P, R] (fp32, attention factor included), for parity checks; owned by this object.</summary>
    public (Tensor Cos, Tensor Sin) Tables => (cos_cached, sin_cached);

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
        if (cos_cached.device_type != x.device_type || cos_cached.device_index != x.device_index)
        {
            var (c, s) = (cos_cached.to(x.device), sin_cached.to(x.device));
            cos_cached.Dispose(); sin_cached.Dispose();
            (cos_cached, sin_cached) = (c, s);
        }
        using var scope = torch.NewDisposeScope();
        var cos = cos_cached.index_select(0, positions.reshape(-1)).reshape(positions.shape[0], positions.shape[1], -1); // [B, T, R]
        var sin = sin_cached.index_select(0, positions.reshape(-1)).reshape(positions.shape[0], positions.shape[1], -1);
        for (long extra = x.dim() - 3; extra > 0; extra--) { cos = cos.unsqueeze(2); sin = sin.unsqueeze(2); } // broadcast over heads
        var pairs = x.to_type(ScalarType.Float32).reshape([.. x.shape[..^1], Dim / 2, 2]);   // [..., R, 2]
        var x0 = pairs.select(-1, 0);
        var x1 = pairs.select(-1, 1);
        var rotated = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim: -1); // [..., R, 2]
        return rotated.reshape(x.shape).to_type(x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Checks positions are inside the precomputed table (a clear error instead of an index crash).</summary>
    public void CheckPositions(long maxPositionUsed)
    {
        if (maxPositionUsed >= MaxPositions)
            throw new Runtime.WhaleArgumentException("position", maxPositionUsed, $"must be < max_position_embeddings = {MaxPositions}");
    }
}
