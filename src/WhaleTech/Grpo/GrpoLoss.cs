// The GRPO objective (DeepSeekMath, Shao et al. 2024, eqs. 3–4) and the variants that followed.
//
//   J(θ) = E[ 1/G Σ_i 1/|o_i| Σ_t { min( ρ_{i,t} Â_{i,t}, clip(ρ_{i,t}, 1−ε, 1+ε_high) Â_{i,t} ) − β D_KL[π_θ‖π_ref] } ]   (eq. 3)
//   ρ_{i,t} = π_θ(o_{i,t} | q, o_{i,<t}) / π_θold(o_{i,t} | q, o_{i,<t})
//   D_KL ≈ π_ref/π_θ − log(π_ref/π_θ) − 1                                                             (eq. 4, "k3")
//
// Advantages Â_{i,t} = Â_i for every token of o_i (outcome supervision, §4.1.2), from the group's rewards:
//   group   (r_i − mean(r)) / (std(r) + eps)    DeepSeekMath / TRL default (scale_rewards="group")
//   batch   (r_i − mean(r)) / (std(r_batch) + eps)     TRL scale_rewards="batch"
//   none    r_i − mean(r)                       Dr. GRPO (Liu et al. 2025): no std scaling
//   rloo    r_i − mean_{j≠i} r_j = G/(G−1) (r_i − mean(r))        RLOO (Ahmadian et al. 2024)
// STD CONVENTION: std is the sample standard deviation WITH Bessel's correction (divide by G−1), as
// torch.std and TRL compute it, unless `bessel: false` (divide by G). Rewards [1, 0, 1, 0] give ±0.866
// with Bessel and ±1.0 without (eps = 0).
//
// KL estimators (Schulman 2020, "Approximating KL divergence"), with log r = log π_ref − log π_θ:
//   k1 = −log r        k2 = ½ (log r)²        k3 = r − log r − 1  (≥ 0, unbiased; DeepSeekMath eq. 4)
//
// Loss aggregation of the per-token loss ℓ_{i,t} over the mask M_{i,t} (1 on completion tokens; LossAggregators.cs):
//   grpo     1/B Σ_i ( Σ_t ℓ M / Σ_t M )           per-sequence mean, then mean over sequences (eq. 3)
//   bnpo     Σ_{i,t} ℓ M / Σ_{i,t} M                 token mean over this (micro-)batch
//   dapo     Σ_{i,t} ℓ M / N_tokens                 token mean over the WHOLE generation batch (Yu et al.
//                                                    2025, eq. 8): N_tokens counts all micro-batches
//   dr_grpo  Σ_{i,t} ℓ M / (B · T_max)               constant normaliser, T_max = max_completion_length
// With one micro-batch dapo equals bnpo; they differ when the batch is split.
//
// Shapes: P prompts, G samples per prompt, B = P·G sequences, T completion tokens.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Grpo;

public enum AdvantageKind { Group, Batch, None, Rloo }
public enum KlEstimator { K1, K2, K3 }

public static class GrpoLoss
{
    /// <summary>Advantages [P, G] from rewards [P, G] (see the header for the four kinds and the std convention).</summary>
    public static Tensor Advantages(Tensor rewards, AdvantageKind kind, bool bessel = true, double eps = 1e-4)
    {
        if (rewards.dim() != 2) throw new Runtime.WhaleArgumentException("rewards", "shape [" + string.Join(", ", rewards.shape) + "]", "must be [prompts, samples per prompt]");
        long G = rewards.shape[1];
        if (G < 2 && kind != AdvantageKind.None && kind != AdvantageKind.Batch)
            throw new Runtime.WhaleArgumentException("num_generations", G, "must be ≥ 2 for group statistics");
        using var scope = torch.NewDisposeScope();
        var mean = rewards.mean([1], keepdim: true);                                            // [P, 1]
        var centered = rewards - mean;                                                           // [P, G]
        Tensor adv = kind switch
        {
            AdvantageKind.Group => centered / (rewards.std(1, unbiased: bessel, keepdim: true) + eps),
            AdvantageKind.Batch => centered / (rewards.numel() > 1 ? rewards.std(unbiased: bessel) + eps : torch.tensor(1.0 + eps, dtype: rewards.dtype)),
            AdvantageKind.None => centered,
            AdvantageKind.Rloo => centered * (G / (double)(G - 1)),
            _ => throw new Runtime.WhaleArgumentException("advantage", kind, "must be group, batch, none or rloo"),
        };
        return adv.MoveToOuterDisposeScope();
    }

    /// <summary>Per-token KL estimate of KL[π_θ ‖ π_ref] from log-probs of the sampled tokens (same shape).</summary>
    public static Tensor Kl(Tensor logp, Tensor refLogp, KlEstimator estimator)
    {
        using var scope = torch.NewDisposeScope();
        var logR = refLogp - logp;                                                               // log(π_ref/π_θ)
        Tensor kl = estimator switch
        {
            KlEstimator.K1 => -logR,
            KlEstimator.K2 => 0.5 * logR.pow(2),
            KlEstimator.K3 => logR.exp() - logR - 1,
            _ => throw new Runtime.WhaleArgumentException("kl_estimator", estimator, "must be k1, k2 or k3"),
        };
        return kl.MoveToOuterDisposeScope();
    }

    /// <summary>The negated clipped surrogate per token, −min(ρ Â, clip(ρ, 1−ε, 1+ε_high) Â), with the masks of
    /// tokens clipped at the low side (ρ &lt; 1−ε and Â &lt; 0) and the high side (ρ &gt; 1+ε_high and Â &gt; 0).</summary>
    /// <param name="advantages">[B] per sequence, or [B, T] per token.</param>
    public static (Tensor Loss, Tensor LowClipped, Tensor HighClipped) ClippedSurrogate(
        Tensor logp, Tensor oldLogp, Tensor advantages, double eps, double epsHigh)
    {
        using var scope = torch.NewDisposeScope();
        var a = advantages.dim() == 1 ? advantages.unsqueeze(1) : advantages;                   // [B, 1] or [B, T]
        var ratio = (logp - oldLogp).exp();                                                      // ρ [B, T]
        var unclipped = ratio * a;
        var clipped = ratio.clamp(1 - eps, 1 + epsHigh) * a;
        var loss = -torch.minimum(unclipped, clipped);
        var low = ratio.lt(1 - eps).logical_and(a.lt(0).expand_as(ratio));
        var high = ratio.gt(1 + epsHigh).logical_and(a.gt(0).expand_as(ratio));
        return (loss.MoveToOuterDisposeScope(), low.MoveToOuterDisposeScope(), high.MoveToOuterDisposeScope());
    }

    /// <summary>Reduces the per-token loss [B, T] over the mask [B, T] with <paramref name="aggregation"/> (LossAggregators.cs).</summary>
    /// <param name="maxCompletionLength">T_max of dr_grpo.</param>
    /// <param name="totalTokens">N_tokens of dapo: completion tokens of the whole generation batch (default: this mask's).</param>
    public static Tensor Aggregate(Tensor perToken, Tensor mask, LossAggregator aggregation, int maxCompletionLength, double? totalTokens = null)
    {
        using var scope = torch.NewDisposeScope();
        var m = mask.to_type(perToken.dtype);
        var masked = perToken * m;                                                               // [B, T]
        return aggregation.Reduce(masked, m, maxCompletionLength, totalTokens ?? m.sum().to_type(ScalarType.Float64).item<double>()).MoveToOuterDisposeScope();
    }

    /// <summary>Per-token GRPO loss: clipped surrogate + β·KL (β = 0 or refLogp null: no KL term).</summary>
    public static (Tensor PerToken, Tensor LowClipped, Tensor HighClipped, Tensor? Kl) PerTokenLoss(
        Tensor logp, Tensor oldLogp, Tensor? refLogp, Tensor advantages, double eps, double epsHigh, double beta, KlEstimator estimator)
    {
        using var scope = torch.NewDisposeScope();
        var (loss, low, high) = ClippedSurrogate(logp, oldLogp, advantages, eps, epsHigh);
        Tensor? kl = null;
        if (beta != 0 && refLogp is not null)
        {
            kl = Kl(logp, refLogp, estimator);
            loss = loss + beta * kl;
        }
        return (loss.MoveToOuterDisposeScope(), low.MoveToOuterDisposeScope(), high.MoveToOuterDisposeScope(), kl?.MoveToOuterDisposeScope());
    }
}
