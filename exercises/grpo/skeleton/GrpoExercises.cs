// GRPO exercises — fill in each TODO, then run `dotnet test exercises/grpo` until every test passes.
// Read src/WhaleTech/Grpo/GrpoLoss.cs's header for the formulas (DeepSeekMath eqs. 3–4), but try first
// without looking at its code.
//
// Shapes: P prompts, G samples per prompt, B sequences, T completion tokens.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Exercises.Grpo;

public static class GrpoExercises
{
    /// <summary>Exercise 1 — group-relative advantages. rewards [P, G] → (r − mean_g) / (std_g + eps),
    /// where std uses Bessel's correction (divide by G − 1). Rewards [1, 0, 1, 0] with eps = 0 → ±0.866.</summary>
    public static Tensor GroupAdvantages(Tensor rewards, double eps)
    {
        // TODO: mean and std over the group dimension (dim 1, keepdim), then normalise.
        throw new NotImplementedException("Exercise 1: GroupAdvantages");
    }

    /// <summary>Exercise 2 — the k3 KL estimator of DeepSeekMath eq. 4 per token:
    /// π_ref/π_θ − log(π_ref/π_θ) − 1, from log-probabilities (same shape). Must be ≥ 0.</summary>
    public static Tensor K3(Tensor logp, Tensor refLogp)
    {
        // TODO: work with log r = refLogp − logp; never exponentiate the probabilities themselves.
        throw new NotImplementedException("Exercise 2: K3");
    }

    /// <summary>Exercise 3 — the clipped surrogate loss with GRPO's aggregation. logp, oldLogp, mask [B, T];
    /// advantages [B]. Per token ℓ = −min(ρ·A, clip(ρ, 1−eps, 1+eps)·A) with ρ = exp(logp − oldLogp);
    /// loss = mean over sequences of (Σ_t ℓ·mask / Σ_t mask). Returns a scalar tensor.</summary>
    public static Tensor ClippedLoss(Tensor logp, Tensor oldLogp, Tensor advantages, Tensor mask, double eps)
    {
        // TODO: ratio, unclipped and clipped terms (advantages.unsqueeze(1) broadcasts over T), masked means.
        throw new NotImplementedException("Exercise 3: ClippedLoss");
    }

    /// <summary>Exercise 4 — a reward function for addition. question is like "12+345=", completion is the
    /// model's text. Return 1.0 when the completion contains &lt;answer&gt;N&lt;/answer&gt; with N the correct sum,
    /// 0.1 when it has the tags but a wrong or unreadable number, 0.0 otherwise. Must never throw.</summary>
    public static double AdditionReward(string question, string completion)
    {
        // TODO: split the question at '+' and '=', find the answer tags, parse with long.TryParse.
        throw new NotImplementedException("Exercise 4: AdditionReward");
    }

    /// <summary>Exercise 5 — one whole GRPO step, from rollouts to the loss (DeepSeekMath eq. 3 with the k3 KL of
    /// eq. 4). questions [P]; completions [P·G], where sequence b = p·G + g is the g-th sample of prompt p;
    /// logp, oldLogp, refLogp, mask [B, T]. Rewards r[p, g] = AdditionReward(questions[p], completions[b]) →
    /// advantages [P, G] (exercise 1, eps = advantageEps) → one advantage per sequence [B] → per token
    /// ℓ = −min(ρ·A, clip(ρ, 1−eps, 1+eps)·A) + β·k3 → loss = mean over sequences of Σ_t ℓ·mask / Σ_t mask.
    /// Returns a scalar tensor of logp's dtype.</summary>
    public static Tensor StepLoss(string[] questions, string[] completions, Tensor logp, Tensor oldLogp, Tensor refLogp, Tensor mask,
                                  double eps, double beta, double advantageEps)
    {
        // TODO: exercises 4 → 1 → 3 and 2. The aggregation is linear, so ClippedLoss(…) + β · (masked mean of K3)
        // works; or build the per-token ℓ and aggregate once.
        throw new NotImplementedException("Exercise 5: StepLoss");
    }
}
