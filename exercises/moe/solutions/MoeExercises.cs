// DeepSeekMoE exercises — reference solutions (see ../skeleton for the tasks and ../README.md).
//
// Papers: DeepSeek-V3 (2024) §2.1.2 eqs. 12–16 (sigmoid gate, selection bias, normalized weights) and its
// released model.py (topk_method "noaux_tc": group-limited routing); Wang et al. 2024, "Auxiliary-Loss-Free
// Load Balancing Strategy for Mixture-of-Experts", Algorithm 1 (bias update) and §4.1 (MaxVio).
//
// Shapes: N tokens, E routed experts, G groups (E/G experts each), Gk = topk_group, K = experts per token.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Exercises.Moe;

public static class MoeExercises
{
    public static Tensor GroupScores(Tensor biasedScores, int groups)
    {
        long n = biasedScores.shape[0], perGroup = biasedScores.shape[1] / groups;
        var grouped = biasedScores.view(n, groups, perGroup);                          // [N, G, E/G]
        return grouped.topk((int)Math.Min(2, perGroup), dim: -1).values.sum(-1);       // [N, G]
    }

    public static (Tensor Indices, Tensor Weights) Route(Tensor logits, Tensor bias, int groups, int topkGroup, int topK, double routedScalingFactor)
    {
        long n = logits.shape[0], e = logits.shape[1];
        var scores = logits.sigmoid();                                                 // [N, E] s_{i,t}
        var biased = scores + bias;                                                    // selection only
        var groupIdx = GroupScores(biased, groups).topk(topkGroup, dim: -1).indexes;   // [N, Gk]
        var keepGroup = torch.zeros(n, groups, dtype: ScalarType.Bool)
            .scatter(1, groupIdx, torch.ones_like(groupIdx, dtype: ScalarType.Bool));  // [N, G]
        var keepExpert = keepGroup.repeat_interleave(e / groups, 1);                   // [N, E]
        var indices = biased.masked_fill(keepExpert.logical_not(), double.NegativeInfinity)
            .topk(topK, dim: -1).indexes;                                              // [N, K]
        var picked = scores.gather(1, indices);                                        // unbiased g'
        var weights = picked / picked.sum(-1, keepdim: true) * routedScalingFactor;    // [N, K]
        return (indices, weights);
    }

    public static double[] BiasUpdate(long[] load, double gamma)
    {
        double mean = load.Average();
        return load.Select(c => gamma * Math.Sign(mean - c)).ToArray();
    }

    public static double MaxVio(long[] load)
    {
        double mean = load.Average();
        return mean == 0 ? 0 : (load.Max() - mean) / mean;
    }

    public static double[] SimulateBalancing(Tensor logits, int groups, int topkGroup, int topK, double gamma, int steps)
    {
        long e = logits.shape[1];
        var bias = torch.zeros(e);                                                     // float32, like the router's buffer
        var maxVio = new double[steps];
        for (int step = 0; step < steps; step++)
        {
            var (indices, _) = Route(logits, bias, groups, topkGroup, topK, 1.0);
            var load = indices.flatten().bincount(null, e).data<long>().ToArray();
            maxVio[step] = MaxVio(load);
            bias += torch.tensor(BiasUpdate(load, gamma).Select(d => (float)d).ToArray());
        }
        return maxVio;
    }
}
