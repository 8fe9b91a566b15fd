// Auxiliary balance losses, the baselines that auxiliary-loss-free balancing replaces. The layer computes
// the chosen one in training mode and exposes it; the trainer adds it to the language-model loss.
//
//   Switch (Fedus et al. 2021, eq. 4):   L = α · E · Σ_i f_i · P_i,  f_i = (tokens sent to i) / (K·T),
//                                        P_i = mean_t s'_{i,t}  (top-K generalisation: Σ_i f_i = 1)
//   GShard (Lepikhin et al. 2020, §2.2): L = α · E · Σ_i (c_i / T) · P_i,  c_i = tokens whose FIRST choice is i
//   Sequence-wise (DeepSeek-V3 eqs. 17–20, α = 1e-4 in V3): for every sequence of length T
//                                        f_i = E / (K·T) · Σ_t 1[s_{i,t} ∈ TopK(s_{·,t})]   (unbiased top-K)
//                                        P_i = 1/T · Σ_t s'_{i,t},  L = α · Σ_i f_i · P_i, averaged over sequences
//   Router z-loss (Zoph et al. 2022, ST-MoE eq. 5): L_z = β · mean_t (logsumexp_i u_{i,t})²; adds to any of the above.
// s'_{i,t} = s_{i,t} / Σ_j s_{j,t} (a no-op for softmax scores). f is a count (no gradient); P carries the gradient.
//
// Shapes: B sequences, T tokens per sequence, N = B·T, E experts, K experts per token.
using TorchSharp;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Moe;

public enum AuxLossKind { None, Switch, GShard, SequenceWise }

/// <summary>Which auxiliary loss a DeepSeekMoE layer adds in training, with its coefficients.</summary>
public sealed record AuxLossOptions(AuxLossKind Kind = AuxLossKind.None, double Alpha = 0.0, double ZLoss = 0.0)
{
    public static AuxLossOptions None { get; } = new();

    public AuxLossOptions Validate()
    {
        Guard.NonNegative("aux alpha", Alpha);
        Guard.NonNegative("z-loss coefficient", ZLoss);
        return this;
    }

    public bool Active => (Kind != AuxLossKind.None && Alpha > 0) || ZLoss > 0;
}

public static class AuxLoss
{
    /// <summary>The configured loss for one forward; a 0-dim fp32 tensor. <paramref name="batch"/> = B (N = B·T).</summary>
    public static Tensor Compute(AuxLossOptions options, Routing routing, long batch)
    {
        using var scope = torch.NewDisposeScope();
        long e = routing.Scores.shape[1], k = routing.Indices.shape[1];
        Tensor loss = torch.zeros(Array.Empty<long>(), dtype: ScalarType.Float32, device: routing.Scores.device);
        if (options.Alpha > 0)
        {
            loss = options.Kind switch
            {
                AuxLossKind.Switch => options.Alpha * Switch(routing.Scores, routing.Indices, e, k),
                AuxLossKind.GShard => options.Alpha * GShard(routing.Scores, routing.Indices, e),
                AuxLossKind.SequenceWise => options.Alpha * SequenceWise(routing.Scores, batch, k),
                _ => loss,
            };
        }
        if (options.ZLoss > 0) loss = loss + options.ZLoss * ZLoss(routing.Logits);
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>E · Σ_i f_i P_i with f_i = count_i / (K·N); equals 1 for perfectly uniform routing and scores.</summary>
    public static Tensor Switch(Tensor scores, Tensor indices, long experts, long k)
    {
        using var scope = torch.NewDisposeScope();
        long n = scores.shape[0];
        var f = Fraction(indices.reshape(-1), experts) ;                           // [E], Σ = 1
        var p = Normalized(scores).mean([0]);                                      // [E]
        return (experts * (f * p).sum()).MoveToOuterDisposeScope();
    }

    /// <summary>E · Σ_i (c_i / N) P_i with c_i counting only each token's first (highest-weight) expert.</summary>
    public static Tensor GShard(Tensor scores, Tensor indices, long experts)
    {
        using var scope = torch.NewDisposeScope();
        var first = indices.select(1, 0);                                          // [N] top-1 expert
        var f = Fraction(first, experts);                                          // [E]
        var p = Normalized(scores).mean([0]);                                      // [E]
        return (experts * (f * p).sum()).MoveToOuterDisposeScope();
    }

    /// <summary>DeepSeek-V3's complementary sequence-wise balance loss (without α), averaged over the B sequences.</summary>
    public static Tensor SequenceWise(Tensor scores, long batch, long k)
    {
        using var scope = torch.NewDisposeScope();
        long n = scores.shape[0], e = scores.shape[1];
        if (batch <= 0 || n % batch != 0) throw new WhaleArgumentException("batch", batch, $"must divide the token count {n}");
        long t = n / batch;
        var s = scores.view(batch, t, e);                                          // [B, T, E]
        var top = s.detach().topk((int)k, dim: -1).indexes;                        // [B, T, K] unbiased top-K
        var hits = torch.zeros(batch, t, e, dtype: ScalarType.Float32, device: scores.device)
            .scatter(2, top, torch.ones(top.shape, dtype: ScalarType.Float32, device: scores.device)); // [B, T, E]
        var f = hits.sum(1) * ((double)e / (k * t));                               // [B, E]
        var p = Normalized(s).mean([1]);                                           // [B, E]
        return (f * p).sum(-1).mean().MoveToOuterDisposeScope();
    }

    /// <summary>mean_t (logsumexp_i u_{i,t})².</summary>
    public static Tensor ZLoss(Tensor logits)
    {
        using var scope = torch.NewDisposeScope();
        return logits.logsumexp(-1).square().mean().MoveToOuterDisposeScope();
    }

    static Tensor Normalized(Tensor scores) => scores / scores.sum(-1, keepdim: true);

    static Tensor Fraction(Tensor flatIndices, long experts)
    {
        var counts = flatIndices.bincount(null, experts).to_type(ScalarType.Float32); // [E]
        return counts / counts.sum();
    }
}
