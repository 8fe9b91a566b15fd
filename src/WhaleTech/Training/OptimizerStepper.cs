// The step every trainer shares (LM, MTP, SFT, GRPO, the MoE, FP8 and MLA-quality experiments): zero the
// gradients, compute the loss, backward, clip the gradient norm, and either take the optimizer step or —
// when the loss or the norm is NaN/Inf — skip it, zero the gradients and say so. Subscribers hear about both:
// the loss-free balancer (DeepSeek-V3 §2.1.2) updates its bias after a step taken and drops the token counts of
// a step skipped; AttachBalancer wires both in one call, so no trainer can forget the skip.
using TorchSharp;
using WhaleTech.Moe;
using static TorchSharp.torch;

namespace WhaleTech.Training;

/// <summary>What one optimizer step did.</summary>
public readonly record struct StepOutcome(double Loss, double GradNorm, bool Skipped);

public sealed class OptimizerStepper
{
    readonly IReadOnlyList<TorchSharp.Modules.Parameter> _parameters;
    readonly double _maxGradNorm;
    readonly int _maxNonFiniteInRow;
    int _nonFiniteInRow;

    public AdamWOptimizer Optimizer { get; }

    /// <summary>Called after every optimizer step taken (e.g. the loss-free bias update).</summary>
    public List<Action> AfterStep { get; } = [];
    /// <summary>Called after every skipped (non-finite) step (e.g. to drop the MoE token counts of its forward).</summary>
    public List<Action> AfterSkip { get; } = [];
    /// <summary>Warnings about skipped steps; default standard error.</summary>
    public Action<string> Warn { get; set; } = s => Console.Error.WriteLine("warning: " + s);

    /// <param name="maxNonFiniteInRow">This many skipped steps in a row stop the run with an error.</param>
    public OptimizerStepper(AdamWOptimizer optimizer, IEnumerable<TorchSharp.Modules.Parameter> parameters, double maxGradNorm, int maxNonFiniteInRow = int.MaxValue)
    {
        Optimizer = optimizer;
        _parameters = parameters.ToList();
        _maxGradNorm = Runtime.Guard.Positive("maxGradNorm", maxGradNorm);
        _maxNonFiniteInRow = (int)Runtime.Guard.Positive("maxNonFiniteInRow", maxNonFiniteInRow);
    }

    /// <summary>Sets the learning rate of every parameter group.</summary>
    public void SetLearningRate(double lr)
    {
        foreach (var g in Optimizer.ParamGroups) g.LearningRate = lr;
    }

    public void ZeroGrad() => Optimizer.zero_grad();

    /// <summary>One whole step: zero_grad, <paramref name="loss"/>(), backward (only of a finite loss), then <see cref="Finish"/>.
    /// <paramref name="step"/> labels warnings.</summary>
    public StepOutcome Run(int step, Func<Tensor> loss)
    {
        Optimizer.zero_grad();
        var l = loss();
        double value = l.item<float>();
        if (!double.IsFinite(value)) return Skip(step, value, double.NaN);
        l.backward();
        return Finish(step, value);
    }

    /// <summary>After the gradients of <paramref name="lossValue"/> were accumulated (one or more backward calls):
    /// clip, then step, or skip when the loss or the norm is not finite.</summary>
    public StepOutcome Finish(int step, double lossValue)
    {
        double norm = torch.nn.utils.clip_grad_norm_(_parameters, _maxGradNorm);
        if (!double.IsFinite(lossValue) || !double.IsFinite(norm)) return Skip(step, lossValue, norm);
        Optimizer.step();
        _nonFiniteInRow = 0;
        foreach (var a in AfterStep) a();
        return new StepOutcome(lossValue, norm, false);
    }

    StepOutcome Skip(int step, double lossValue, double norm)
    {
        Optimizer.zero_grad();
        _nonFiniteInRow++;
        foreach (var a in AfterSkip) a();
        Warn($"step {step}: non-finite {(double.IsFinite(lossValue) ? "gradient norm" : "loss")} ({(double.IsFinite(lossValue) ? norm : lossValue)}); step skipped ({_nonFiniteInRow} in a row)");
        if (_nonFiniteInRow >= _maxNonFiniteInRow)
            throw new Runtime.WhaleException($"training stopped: {_nonFiniteInRow} non-finite steps in a row at step {step} (lower the learning rate, or check the data)");
        return new StepOutcome(lossValue, norm, true);
    }

    /// <summary>Wires DeepSeek-V3's loss-free balancer to this stepper: its bias update after each step taken,
    /// and its token counts dropped after each step skipped. <paramref name="onUpdate"/> gets each update's loads.</summary>
    public OptimizerStepper AttachBalancer(LoadBalancer? balancer, Action<StepLoad>? onUpdate = null)
    {
        if (balancer is null) return this;
        AfterStep.Add(() => { var snap = balancer.AfterOptimizerStep(); onUpdate?.Invoke(snap); });
        AfterSkip.Add(balancer.DiscardStepCounts);
        return this;
    }
}
