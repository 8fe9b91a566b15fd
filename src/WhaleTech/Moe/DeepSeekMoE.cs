// The DeepSeekMoE feed-forward layer (Dai et al. 2024, "DeepSeekMoE", §3, eq. 9; DeepSeek-V3 §2.1.2, eqs. 12–16):
//
//   h'_t = u_t + Σ_{i=1..Ns} FFN^(s)_i(u_t) + Σ_{i=1..Nr} g_{i,t} · FFN^(r)_i(u_t)
//
// (the residual u_t is added by the decoder block, not here). Ns shared experts are always active; HF DeepSeek-V3
// merges them into ONE SwiGLU of width Ns · moe_intermediate_size (`shared_experts.*`). Nr fine-grained routed
// experts, K = num_experts_per_tok of them per token, chosen by the Router (group-limited, bias for selection
// only, weights from unbiased scores). No token is dropped.
//
// Auxiliary-loss-free balancing (Wang et al. 2024, Algorithm 1) needs the per-expert token counts of a whole
// optimizer step: in training mode every forward adds its counts to StepCounts; the LoadBalancer takes them
// after optimizer.step() and nudges gate.e_score_correction_bias. In eval mode nothing accumulates.
//
// HF names relative to the layer ("model.layers.{l}.mlp"): gate.weight [E, D], gate.e_score_correction_bias [E],
// experts.{e}.{gate,up,down}_proj.weight, shared_experts.{gate,up,down}_proj.weight.
// Shapes: B batch, T time, N = B·T tokens, D hidden_size, E routed experts, K experts per token.
using TorchSharp;
using TorchSharp.Modules;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Moe;

public sealed class DeepSeekMoE : nn.Module<Tensor, Tensor>
{
    public readonly Router gate;
    public readonly ModuleList<Expert> experts;
    public readonly Expert? shared_experts;

    Tensor? _stepCounts;   // [E] int64, training tokens per expert since the last TakeStepCounts (outside dispose scopes)
    Tensor? _lastCounts;   // [E] int64, tokens per expert of the last forward, train or eval

    /// <summary>The HF path of this layer, e.g. "model.layers.3.mlp".</summary>
    public string Prefix { get; }
    public int NumExperts { get; }
    public int TopK { get; }

    /// <summary>How tokens reach their experts; all paths compute the same function.</summary>
    public MoeDispatch DispatchPath { get; set; } = MoeDispatch.Sorted;

    /// <summary>Auxiliary loss computed in training mode (baselines; None for loss-free balancing).</summary>
    public AuxLossOptions AuxLossOptions { get; set; } = AuxLossOptions.None;

    /// <summary>The aux loss of the last training forward (0-dim fp32, part of the autograd graph), or null.
    /// Collect it with <see cref="MoeLayers.TakeAuxLoss"/> after the forward and add it to the loss before backward().</summary>
    public Tensor? LastAuxLoss { get; private set; }

    public DeepSeekMoE(ModelConfig config, string prefix, LinearFactory linear) : base(nameof(DeepSeekMoE))
    {
        config.Validate();
        if (config.NRoutedExperts is not int e)
            throw new WhaleArgumentException("n_routed_experts", null, "must be set for a DeepSeekMoE layer");
        Prefix = prefix;
        NumExperts = e;
        TopK = config.NumExpertsPerTok!.Value;
        gate = new Router(config);
        experts = new ModuleList<Expert>(Enumerable.Range(0, e)
            .Select(i => new Expert(config.HiddenSize, config.MoeIntermediateSize, linear, $"{prefix}.experts.{i}")).ToArray());
        int shared = config.NSharedExperts ?? 0;
        if (shared > 0)
            shared_experts = new Expert(config.HiddenSize, (long)shared * config.MoeIntermediateSize, linear, prefix + ".shared_experts");
        RegisterComponents();
    }

    /// <summary>The MLP factory DeepSeekLM uses for MoE layers (MlpFactory).</summary>
    public static MlpFactory Factory { get; } = (cfg, layer, prefix, linear) => new DeepSeekMoE(cfg, prefix, linear);

    /// <summary><paramref name="x"/> [B, T, D] or [N, D] → same shape.</summary>
    public override Tensor forward(Tensor x)
    {
        long d = gate.weight.shape[1];
        if ((x.dim() != 2 && x.dim() != 3) || x.shape[^1] != d)
            throw new WhaleArgumentException("x", string.Join("x", x.shape), $"must be [B, T, {d}] or [N, {d}]");
        long batch = x.dim() == 3 ? x.shape[0] : 1;
        var flat = x.reshape(-1, d);                                              // [N, D]
        using var routing = gate.Route(flat);                                     // indices/weights [N, K]
        RecordCounts(routing.Indices);
        var y = Dispatch.Run(DispatchPath, flat, routing.Indices, routing.Weights, experts.ToList()); // [N, D]
        if (shared_experts is not null)                                            // on a CPU: one autograd node in training, the chain in inference (SharedExpertFunction.cs)
            y = y + (SharedExpertFunction.Apply(flat, shared_experts) ?? shared_experts.forward(flat));   // [N, D]
        LastAuxLoss?.Dispose();
        // Kept outside dispose scopes (a decoder block's scope would free it); TakeAuxLoss hands it back to the caller's.
        LastAuxLoss = training && AuxLossOptions.Active ? AuxLoss.Compute(AuxLossOptions, routing, batch).DetachFromDisposeScope() : null;
        return y.reshape(x.shape);                                                // [B, T, D] or [N, D]
    }

    void RecordCounts(Tensor indices)
    {
        using var _ = torch.no_grad();
        var counts = indices.reshape(-1).bincount(null, NumExperts).DetachFromDisposeScope(); // [E] int64
        _lastCounts?.Dispose();
        _lastCounts = counts;
        if (!training) return;
        if (_stepCounts is null || _stepCounts.device_type != counts.device_type || _stepCounts.device_index != counts.device_index)
        {
            _stepCounts?.Dispose();
            _stepCounts = torch.zeros_like(counts).DetachFromDisposeScope();
        }
        _stepCounts.add_(counts);
    }

    /// <summary>Tokens per expert of the last forward (train or eval), copied to the host; null before any forward.</summary>
    public long[]? LastCounts()
    {
        if (_lastCounts is null) return null;
        using var host = _lastCounts.cpu();
        return host.data<long>().ToArray();
    }

    /// <summary>Training tokens per expert since the last call (a whole optimizer step), and resets them.
    /// Returns zeros when no training forward ran. Called by <see cref="LoadBalancer"/> after optimizer.step().</summary>
    public long[] TakeStepCounts()
    {
        if (_stepCounts is null) return new long[NumExperts];
        using var host = _stepCounts.cpu();
        var result = host.data<long>().ToArray();
        _stepCounts.zero_();
        return result;
    }

    /// <summary>Takes (and forgets) the aux loss of the last training forward, as a tensor of the caller's dispose scope.</summary>
    public Tensor? TakeAuxLoss()
    {
        if (LastAuxLoss is not { } stored) return null;
        LastAuxLoss = null;
        var result = stored.alias();      // a new handle on the same graph node, owned by the current scope
        stored.Dispose();
        return result;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _stepCounts?.Dispose(); _stepCounts = null;
            _lastCounts?.Dispose(); _lastCounts = null;
            LastAuxLoss?.Dispose(); LastAuxLoss = null;
        }
        base.Dispose(disposing);
    }
}

/// <summary>Finds the DeepSeekMoE layers of any model, and the hooks a trainer calls.</summary>
public static class MoeLayers
{
    /// <summary>Every DeepSeekMoE layer of <paramref name="model"/> (itself included), in module order.</summary>
    public static IReadOnlyList<DeepSeekMoE> Find(nn.Module model)
    {
        var list = new List<DeepSeekMoE>();
        if (model is DeepSeekMoE self) list.Add(self);
        foreach (var (_, m) in model.named_modules())
            if (m is DeepSeekMoE moe && !ReferenceEquals(moe, model)) list.Add(moe);
        return list;
    }

    /// <summary>Sum of the aux losses of the last forward over all layers (null when none); call after the
    /// forward, inside the step's dispose scope, and add it to the loss before backward().</summary>
    public static Tensor? TakeAuxLoss(IEnumerable<DeepSeekMoE> layers)
    {
        Tensor? total = null;
        foreach (var layer in layers)
            if (layer.TakeAuxLoss() is { } l) total = total is null ? l : total + l;
        return total;
    }

    /// <summary>Sets the dispatch path and aux loss of every layer.</summary>
    public static void Configure(IEnumerable<DeepSeekMoE> layers, MoeDispatch? dispatch = null, AuxLossOptions? aux = null)
    {
        foreach (var layer in layers)
        {
            if (dispatch is { } d) layer.DispatchPath = d;
            if (aux is not null) layer.AuxLossOptions = aux.Validate();
        }
    }
}
