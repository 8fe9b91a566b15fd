// Auxiliary-loss-free load balancing (Wang et al. 2024, "Auxiliary-Loss-Free Load Balancing Strategy for
// Mixture-of-Experts", Algorithm 1; DeepSeek-V3 §2.1.2, eq. 16 and the bias update after it).
//
// Each routed expert i has a bias b_i that is added to its score for SELECTION only (Router.Select). After
// every optimizer step — once, from the token counts c_i of the whole step (all micro-batches), never during
// evaluation — the bias moves toward balance:
//
//   e_i  = mean_j c_j − c_i                (load error: positive for an under-loaded expert)
//   Sign             b_i += γ · sign(e_i)                       (Algorithm 1; DeepSeek-V3, γ = 0.001)
//   MeanCentredSign  b_i += γ · (sign(e_i) − mean_j sign(e_j))  (keeps Σ b = 0 so biases do not drift together)
//   Proportional     b_i += γ · e_i / mean_j c_j                (step size grows with the relative imbalance)
//
// γ follows a schedule; DeepSeek-V3 used γ = 0.001 for the first 14.3T tokens and γ = 0 (frozen) for the rest.
// Shapes: E routed experts per layer.
using TorchSharp;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Moe;

public enum BiasUpdateRule { None, Sign, MeanCentredSign, Proportional }

/// <summary>γ as a function of the optimizer step (0-based): <see cref="Gamma"/> before <see cref="FreezeAfterStep"/>,
/// <see cref="LateGamma"/> from then on (0 = frozen, DeepSeek-V3's last phase; a small γ = a finer late phase).</summary>
public sealed record GammaSchedule(double Gamma, long FreezeAfterStep = long.MaxValue, double LateGamma = 0.0)
{
    public static GammaSchedule Constant(double gamma) => new(gamma);

    /// <summary>γ until <paramref name="step"/> (exclusive), then 0: the bias is frozen, as in DeepSeek-V3's last phase.</summary>
    public static GammaSchedule FreezeAfter(double gamma, long step) => new(gamma, step);

    /// <summary>γ until <paramref name="step"/> (exclusive), then <paramref name="lateGamma"/>: coarse then fine steps.</summary>
    public static GammaSchedule TwoPhase(double gamma, long step, double lateGamma) => new(gamma, step, lateGamma);

    public double At(long step) => step < FreezeAfterStep ? Gamma : LateGamma;
}

/// <summary>Per-layer token counts of one optimizer step, as consumed by the balancer.</summary>
public sealed record StepLoad(long Step, IReadOnlyList<long[]> Counts);

/// <summary>The bias updater. The trainer calls <see cref="AfterOptimizerStep"/> once, right after optimizer.step().</summary>
public sealed class LoadBalancer
{
    readonly IReadOnlyList<DeepSeekMoE> _layers;

    public BiasUpdateRule Rule { get; }
    public GammaSchedule Schedule { get; }
    /// <summary>Optimizer steps seen so far.</summary>
    public long Step { get; private set; }

    /// <summary>Sets the step counter when a run resumes from a checkpoint (the γ schedule continues from it).</summary>
    public void RestoreStep(long step) => Step = (long)Guard.NonNegative("step", step);

    public LoadBalancer(IReadOnlyList<DeepSeekMoE> layers, BiasUpdateRule rule, GammaSchedule? schedule = null)
    {
        _layers = layers;
        Rule = rule;
        Schedule = schedule ?? GammaSchedule.Constant(1e-3);
        Guard.NonNegative("gamma", Schedule.Gamma);
        Guard.NonNegative("late gamma", Schedule.LateGamma);
        if (rule != BiasUpdateRule.None && layers.Count == 0)
            throw new WhaleArgumentException("layers", 0, "loss-free balancing needs at least one DeepSeekMoE layer");
    }

    /// <summary>Finds the layers of <paramref name="model"/>.</summary>
    public LoadBalancer(nn.Module model, BiasUpdateRule rule, GammaSchedule? schedule = null)
        : this(MoeLayers.Find(model), rule, schedule) { }

    /// <summary>Takes the token counts every layer accumulated since the previous call (the whole optimizer step,
    /// training forwards only), updates each layer's bias by the rule, and returns the counts for metrics.
    /// With rule None, or γ = 0 at this step, the bias is left unchanged but counts are still taken.</summary>
    public StepLoad AfterOptimizerStep()
    {
        var counts = new List<long[]>(_layers.Count);
        double gamma = Schedule.At(Step);
        foreach (var layer in _layers)
        {
            var c = layer.TakeStepCounts();
            counts.Add(c);
            if (Rule == BiasUpdateRule.None || gamma == 0 || c.Sum() == 0) continue;
            var delta = Delta(Rule, c, gamma);
            using var _ = torch.no_grad();
            using var d = torch.tensor(delta, dtype: ScalarType.Float32, device: layer.gate.Bias.device);
            layer.gate.Bias.add_(d);
        }
        return new StepLoad(Step++, counts);
    }

    /// <summary>Drops the token counts accumulated since the last step without updating any bias: for a step the
    /// trainer skipped (non-finite loss or gradient), so its forward does not count toward the next step's loads.</summary>
    public void DiscardStepCounts()
    {
        foreach (var layer in _layers) layer.TakeStepCounts();
    }

    /// <summary>The bias change of one layer for counts <paramref name="counts"/> (pure; also used by tests).</summary>
    public static float[] Delta(BiasUpdateRule rule, long[] counts, double gamma)
    {
        double mean = counts.Average();
        var error = counts.Select(c => mean - c).ToArray();                 // e_i, [E]
        double[] step = rule switch
        {
            BiasUpdateRule.None => new double[counts.Length],
            BiasUpdateRule.Sign => error.Select(e => (double)Math.Sign(e)).ToArray(),
            BiasUpdateRule.MeanCentredSign => Centre(error.Select(e => (double)Math.Sign(e)).ToArray()),
            BiasUpdateRule.Proportional => error.Select(e => mean > 0 ? e / mean : 0).ToArray(),
            _ => throw new WhaleArgumentException("rule", rule, "must be None, Sign, MeanCentredSign or Proportional"),
        };
        return step.Select(s => (float)(gamma * s)).ToArray();
    }

    static double[] Centre(double[] v)
    {
        double m = v.Average();
        return v.Select(x => x - m).ToArray();
    }
}
