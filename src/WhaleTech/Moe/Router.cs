// The DeepSeekMoE router ("gate"): token-to-expert affinities, group-limited top-K selection with the
// auxiliary-loss-free bias, and the combine weights.
//
// DeepSeek-V3 (2024) §2.1.2, eqs. 12–16:
//   s_{i,t}  = sigmoid(u_tᵀ e_i)                      (V3; V2 uses softmax over experts)        eq. 15
//   selection: TopK over s_{i,t} + b_i               (b_i = e_score_correction_bias, selection only) eq. 16
//   g'_{i,t} = s_{i,t} if i selected else 0          (weights from the UNBIASED scores)
//   g_{i,t}  = g'_{i,t} / Σ_j g'_{j,t}               (norm_topk_prob)                          eq. 13
//   weights  = g_{i,t} · routed_scaling_factor
// Node/group-limited routing (DeepSeek-V2 §2.1.3, V3 §2.1.2 as in the released model.py): experts are split
// into n_group groups; a group's score is the sum of its top-2 biased scores (V3, topk_method "noaux_tc") or
// its max score (V2, "group_limited_greedy"); only the topk_group best groups stay, the other experts are
// masked with −inf, so selection can never leave the chosen groups, even when every biased score is negative.
//
// Everything here runs in fp32, whatever the dtype of the model.
// Shapes: N tokens, D hidden_size, E routed experts, G groups, Gk = topk_group, K = num_experts_per_tok.
using TorchSharp;
using TorchSharp.Modules;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Moe;

/// <summary>What the router decided for a batch of tokens. Dispose it when done.</summary>
public sealed class Routing : IDisposable
{
    /// <summary>[N, K] int64: the selected experts of each token.</summary>
    public required Tensor Indices { get; init; }
    /// <summary>[N, K] fp32: combine weights (normalized unbiased scores × routed_scaling_factor); carries gradient.</summary>
    public required Tensor Weights { get; init; }
    /// <summary>[N, E] fp32: unbiased scores s_{i,t} (sigmoid or softmax); carries gradient.</summary>
    public required Tensor Scores { get; init; }
    /// <summary>[N, E] fp32: router logits u_tᵀ e_i; carries gradient (z-loss).</summary>
    public required Tensor Logits { get; init; }

    public void Dispose()
    {
        Indices.Dispose(); Weights.Dispose(); Scores.Dispose(); Logits.Dispose();
    }
}

/// <summary>The router of one DeepSeekMoE layer; HF names `gate.weight` [E, D] and `gate.e_score_correction_bias` [E].
/// The bias is part of the checkpoint only for topk_method "noaux_tc" (DeepSeek-V3); V2's "greedy" and
/// "group_limited_greedy" checkpoints have no such key, so there it is a non-persistent buffer (zeros unless an
/// experiment moves it), neither saved nor expected on load — PyTorch's register_buffer(persistent=False).</summary>
public sealed class Router : nn.Module, IO.INonPersistentBuffers
{
    public const string BiasName = "e_score_correction_bias";

    public readonly Parameter weight;                       // [E, D] fp32

    public int Experts { get; }
    public int TopK { get; }
    public int Groups { get; }
    public int TopKGroups { get; }
    public bool NormTopkProb { get; }
    public double RoutedScalingFactor { get; }
    public string ScoringFunc { get; }
    public string TopkMethod { get; }

    public Router(ModelConfig config) : base(nameof(Router))
    {
        config.Validate();
        if (config.NRoutedExperts is not int e)
            throw new WhaleArgumentException("n_routed_experts", null, "must be set for a DeepSeekMoE layer");
        Experts = e;
        TopK = config.NumExpertsPerTok!.Value;
        Groups = config.NGroup;
        TopKGroups = config.TopkGroup;
        NormTopkProb = config.NormTopkProb;
        RoutedScalingFactor = config.RoutedScalingFactor;
        ScoringFunc = config.ScoringFunc;
        TopkMethod = config.TopkMethod;
        weight = new Parameter(torch.empty(e, config.HiddenSize, dtype: ScalarType.Float32));
        using (torch.no_grad()) weight.normal_(0, config.InitializerRange);
        // A buffer, so it is saved in checkpoints and moved with the model but never trained by the optimizer.
        register_buffer(BiasName, torch.zeros(e, dtype: ScalarType.Float32));
        RegisterComponents();
    }

    /// <summary>b, [E] fp32: the auxiliary-loss-free balancing bias (selection only).</summary>
    public Tensor Bias => get_buffer(BiasName)!;

    /// <summary>True when the bias is saved and loaded with the weights (topk_method "noaux_tc").</summary>
    public bool BiasIsPersistent => TopkMethod == "noaux_tc";

    IReadOnlyCollection<string> IO.INonPersistentBuffers.NonPersistentBufferNames => BiasIsPersistent ? [] : [BiasName];

    /// <summary>Routes tokens <paramref name="x"/> [N, D] of any floating dtype.</summary>
    public Routing Route(Tensor x)
    {
        if (x.dim() != 2 || x.shape[1] != weight.shape[1])
            throw new WhaleArgumentException("x", string.Join("x", x.shape), $"must be [N, {weight.shape[1]}]");
        using var scope = torch.NewDisposeScope();
        var x32 = x.dtype == ScalarType.Float32 ? x : x.to_type(ScalarType.Float32);
        var logits = nn.functional.linear(x32, weight.dtype == ScalarType.Float32 ? weight : weight.to_type(ScalarType.Float32)); // [N, E]
        var scores = ScoringFunc == "sigmoid" ? logits.sigmoid() : logits.softmax(-1);                          // [N, E]
        var bias = Bias;
        var indices = Select(scores.detach(), bias.dtype == ScalarType.Float32 ? bias : bias.to_type(ScalarType.Float32)); // [N, K]
        var weights = scores.gather(1, indices);                                                                 // [N, K]
        if (NormTopkProb) weights = weights / (weights.sum(-1, keepdim: true) + 1e-20);
        if (RoutedScalingFactor != 1.0) weights = weights * RoutedScalingFactor;
        return new Routing
        {
            Indices = indices.MoveToOuterDisposeScope(),
            Weights = weights.MoveToOuterDisposeScope(),
            Scores = scores.MoveToOuterDisposeScope(),
            Logits = logits.MoveToOuterDisposeScope(),
        };
    }

    /// <summary>Group-limited top-K over biased scores. <paramref name="scores"/> [N, E], <paramref name="bias"/> [E]; returns [N, K] int64.</summary>
    public Tensor Select(Tensor scores, Tensor bias)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        long n = scores.shape[0];
        var choice = scores + bias;                                                     // [N, E] biased scores
        if (Groups > 1 && TopkMethod != "greedy")
        {
            int perGroup = Experts / Groups;
            var grouped = choice.view(n, Groups, perGroup);                             // [N, G, E/G]
            var groupScores = TopkMethod == "noaux_tc"
                ? grouped.topk(Math.Min(2, perGroup), dim: -1).values.sum(-1)           // [N, G] sum of top-2
                : grouped.amax(-1);                                                     // [N, G] max (V2)
            var groupIdx = groupScores.topk(TopKGroups, dim: -1).indexes;               // [N, Gk]
            var groupMask = torch.zeros(n, Groups, dtype: ScalarType.Bool, device: scores.device)
                .scatter(1, groupIdx, torch.ones_like(groupIdx, dtype: ScalarType.Bool)); // [N, G]
            var expertMask = groupMask.unsqueeze(-1).expand(n, Groups, perGroup).reshape(n, Experts); // [N, E]
            choice = choice.masked_fill(expertMask.logical_not(), double.NegativeInfinity);
        }
        var indices = choice.topk(TopK, dim: -1).indexes;                               // [N, K]
        return indices.MoveToOuterDisposeScope();
    }
}
