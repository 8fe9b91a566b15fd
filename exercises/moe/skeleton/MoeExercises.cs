// DeepSeekMoE exercises — fill in each TODO, then run `dotnet test exercises/moe` until every test passes.
//
// Papers: DeepSeek-V3 (2024) §2.1.2 eqs. 12–16 (sigmoid gate, selection bias, normalized weights) and its
// released model.py (topk_method "noaux_tc": group-limited routing); Wang et al. 2024, "Auxiliary-Loss-Free
// Load Balancing Strategy for Mixture-of-Experts", Algorithm 1 (bias update) and §4.1 (MaxVio).
// The library versions: src/WhaleTech/Moe/Router.cs, LoadBalancer.cs, LoadMetrics.cs — read their headers,
// but try first without their code.
//
//   s_{i,t} = sigmoid(u_tᵀ e_i)                                   eq. 15 (the logits u_tᵀ e_i are given)
//   selection: top-K of s_{i,t} + b_i, within the chosen groups   eq. 16 (b_i: selection only!)
//   g_{i,t} = s_{i,t} / Σ_{j selected} s_{j,t}                    eq. 13, from the UNBIASED scores
//   weight_{i,t} = g_{i,t} · routed_scaling_factor               (2.5 in DeepSeek-V3)
//   b_i ← b_i + γ · sign(mean_j c_j − c_i)                        Algorithm 1 (γ = 0.001 in DeepSeek-V3)
//   MaxVio = (max_i c_i − mean_i c_i) / mean_i c_i                Wang et al. §4.1
//
// Shapes: N tokens, E routed experts, G groups (E/G experts each), Gk = topk_group, K = experts per token.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Exercises.Moe;

public static class MoeExercises
{
    /// <summary>Exercise 1 — group scores of "noaux_tc": view the biased scores [N, E] as [N, G, E/G] and
    /// score each group by the SUM OF ITS TOP-2 experts (the top-1 when a group has one expert). → [N, G].</summary>
    public static Tensor GroupScores(Tensor biasedScores, int groups)
    {
        // TODO: view, topk(min(2, E/G)) over the last dim, sum.
        throw new NotImplementedException("Exercise 1: GroupScores");
    }

    /// <summary>Exercise 2 — DeepSeek-V3 routing of N tokens. logits [N, E], bias [E]. Scores s = sigmoid(logits);
    /// the biased scores s + b pick the topkGroup best groups (by GroupScores), then the topK best experts inside
    /// them (experts of other groups can never be chosen, even when every biased score is negative); the weights
    /// come from the UNBIASED s of the chosen experts, normalized to sum 1, times routedScalingFactor.
    /// Returns Indices [N, K] (int64, any order) and Weights [N, K] (the weight of each index).</summary>
    public static (Tensor Indices, Tensor Weights) Route(Tensor logits, Tensor bias, int groups, int topkGroup, int topK, double routedScalingFactor)
    {
        // TODO: topk over GroupScores → group mask [N, G] (scatter) → expert mask [N, E] (repeat_interleave);
        // masked_fill the other experts' biased scores with −inf (why not 0?); topk; gather s; normalize; scale.
        throw new NotImplementedException("Exercise 2: Route");
    }

    /// <summary>Exercise 3 — the auxiliary-loss-free bias update of one step (Algorithm 1): from the tokens each
    /// expert received, load [E], return Δb [E] with Δb_i = γ · sign(mean_j load_j − load_i): under-loaded experts
    /// become more attractive, over-loaded ones less. Loads [10, 2, 6, 6], γ = 0.001 → [−0.001, 0.001, 0, 0].</summary>
    public static double[] BiasUpdate(long[] load, double gamma)
    {
        // TODO: one line with Math.Sign.
        throw new NotImplementedException("Exercise 3: BiasUpdate");
    }

    /// <summary>Exercise 4 — MaxVio = (max load − mean load) / mean load: 0 when balanced, E − 1 when one expert
    /// takes every token; define it as 0 when no token was routed. [10, 2, 6, 6] → 2/3.</summary>
    public static double MaxVio(long[] load)
    {
        // TODO
        throw new NotImplementedException("Exercise 4: MaxVio");
    }

    /// <summary>Exercise 5 — the whole loop: route the same batch <paramref name="steps"/> times with
    /// routedScalingFactor 1, starting from b = 0 (a float32 [E] tensor, like the router's buffer). Each step:
    /// Route, count the load per expert (bincount of the indices), record MaxVio, then add BiasUpdate (as float32)
    /// to b. Returns MaxVio of every step; it should fall as the bias learns the imbalance.</summary>
    public static double[] SimulateBalancing(Tensor logits, int groups, int topkGroup, int topK, double gamma, int steps)
    {
        // TODO: exercises 2–4 in a loop. indices.flatten().bincount(null, E) gives the load.
        throw new NotImplementedException("Exercise 5: SimulateBalancing");
    }
}
