// Language-model pretraining loop: next-token cross-entropy, AdamW (Loshchilov & Hutter 2019; AdamWOptimizer.cs,
// FP32 master weights, moments in FP32 or — DeepSeek-V3 §3.3 — BF16) with decoupled weight decay on matrices only, warm-up + cosine schedule, gradient clipping, evaluation
// loss, and a NaN/Inf guard (a non-finite loss or gradient skips the step with a warning; K in a row
// stops the run). One torch.NewDisposeScope() per step keeps native memory flat.
// Hooks let other techniques join the loop without changing it: auxiliary losses (MoE balance losses)
// and after-step actions (DeepSeek-V3's loss-free bias update, once per optimizer step).
// A model with multi-token prediction modules (num_nextn_predict_layers > 0) also trains them: total loss =
// L_main + L_MTP with L_MTP = λ/D Σ_k L_MTP^k (DeepSeek-V3 eqs. 24–25), λ = TrainOptions.MtpWeight; with λ = 0
// or no MTP modules the step is exactly the plain next-token step.
using System.Text.Json.Serialization;
using TorchSharp;
using WhaleTech.Core;
using WhaleTech.Model;
using static TorchSharp.torch;

namespace WhaleTech.Training;

/// <summary>The LM loop: the shared sizes (TrainingLoop: steps, batch, peak lr, weight decay, clipping) plus the
/// token window, the warm-up + cosine schedule, evaluation, the non-finite guard, MTP and the moment precision.</summary>
public sealed record TrainOptions : TrainingLoop
{
    public TrainOptions() { }
    /// <summary>The shared sizes of <paramref name="loop"/>; everything else at its default.</summary>
    public TrainOptions(TrainingLoop loop) : base(loop) { }

    [JsonPropertyOrder(3)] public int SequenceLength { get; init; } = 64;
    [JsonPropertyOrder(5)] public double MinLearningRate { get; init; } = 3e-4;
    [JsonPropertyOrder(6)] public int WarmupSteps { get; init; } = 30;
    [JsonPropertyOrder(9)] public int EvalEvery { get; init; } = 100;
    [JsonPropertyOrder(9)] public int EvalBatches { get; init; } = 8;
    [JsonPropertyOrder(9)] public int Seed { get; init; } = 1;
    [JsonPropertyOrder(9)] public int MaxNonFiniteInRow { get; init; } = 5;
    /// <summary>λ of the MTP loss (DeepSeek-V3 eq. 25; 0.3 early in V3's pre-training, then 0.1). 0 = off.
    /// Only used when the model has MTP modules.</summary>
    [JsonPropertyOrder(9)] public double MtpWeight { get; init; } = Model.MultiTokenPrediction.DefaultWeight;
    /// <summary>Storage precision of AdamW's m and v: fp32 (default, 8 bytes/parameter) or bf16 (DeepSeek-V3 §3.3,
    /// 4 bytes/parameter; the update is still computed in FP32 and the master weights stay FP32).</summary>
    [JsonPropertyName("optimizer_moments"), JsonPropertyOrder(9)] public MomentPrecision OptimizerMoments { get; init; } = MomentPrecision.Fp32;

    /// <summary>The warm-up + cosine schedule of this loop.</summary>
    public LrSchedule Schedule() => new(LearningRate, WarmupSteps, Steps, MinLearningRate);

    public new TrainOptions Validate()
    {
        base.Validate();
        Runtime.Guard.Positive("seq_len", SequenceLength);
        Runtime.Guard.Positive("eval_every", EvalEvery);
        Runtime.Guard.Positive("eval_batches", EvalBatches);
        Runtime.Guard.Positive("max_nonfinite_in_row", MaxNonFiniteInRow);
        Runtime.Guard.NonNegative("mtp_weight", MtpWeight);
        if (!Enum.IsDefined(OptimizerMoments)) throw new Runtime.WhaleArgumentException("optimizer_moments", OptimizerMoments, "must be fp32 or bf16");
        Schedule().Validate();
        return this;
    }
}

public sealed record StepMetrics(int Step, double Loss, double LearningRate, double GradNorm, bool Skipped, double? EvalLoss)
{
    /// <summary>L_MTP^k for k = 1…D (nats, before the λ/D weighting), or null when MTP is off.</summary>
    public double[]? MtpLosses { get; init; }
}

public sealed class LmTrainer
{
    readonly DeepSeekLM _model;
    readonly TrainOptions _o;
    readonly LrSchedule _schedule;
    public AdamWOptimizer Optimizer => Stepper.Optimizer;
    /// <summary>The shared step (clip, non-finite skip, optimizer step, events): attach the loss-free balancer with
    /// <c>Stepper.AttachBalancer(balancer)</c>, other after-step work with <c>Stepper.AfterStep</c> / <c>AfterSkip</c>.</summary>
    public OptimizerStepper Stepper { get; }
    public int Step { get; private set; }
    public TrainOptions Options => _o;

    /// <summary>Sets the step counter when resuming from a checkpoint (the schedule continues from it).</summary>
    public void RestoreStep(int step) => Step = (int)Runtime.Guard.InRange("step", step, 0, _o.Steps);

    /// <summary>Extra losses added to the LM loss each step (e.g. MoE auxiliary balance losses); may return null.</summary>
    public List<Func<Tensor?>> AuxiliaryLosses { get; } = [];
    /// <summary>Warnings (skipped steps) go here; default Console.Error.</summary>
    public Action<string> Warn { get => Stepper.Warn; set => Stepper.Warn = value; }

    public LmTrainer(DeepSeekLM model, TrainOptions options)
    {
        _model = model;
        _o = options.Validate();
        _schedule = _o.Schedule();
        // Decay matrices (linears, embeddings); never norms' gains or biases.
        var decay = model.parameters().Where(p => p.requires_grad && p.dim() >= 2).ToList();
        var noDecay = model.parameters().Where(p => p.requires_grad && p.dim() < 2).ToList();
        var optimizer = new AdamWOptimizer(
        [
            new AdamWParamGroup(decay, _o.LearningRate, _o.WeightDecay),
            new AdamWParamGroup(noDecay, _o.LearningRate, 0.0),
        ], beta1: 0.9, beta2: 0.95, moments: _o.OptimizerMoments);
        Stepper = new OptimizerStepper(optimizer, model.parameters(), _o.GradClip, _o.MaxNonFiniteInRow);
    }

    /// <summary>One optimizer step on a batch. Returns its metrics; a non-finite loss/gradient skips it.</summary>
    public StepMetrics TrainStep(Tensor inputs, Tensor targets)
    {
        using var scope = torch.NewDisposeScope();
        _model.train();
        double lr = _schedule.At(Step);
        Stepper.SetLearningRate(lr);
        double[]? mtpLosses = null;
        Tensor? loss = null;
        var outcome = Stepper.Run(Step, () =>
        {
            Tensor total;
            if (_model.MtpModules.Count > 0 && _o.MtpWeight > 0)
            {
                var (logits, mtpLogits) = _model.ForwardWithMtp(inputs);
                loss = Losses.CrossEntropy(logits, targets);
                var depth = Model.MultiTokenPrediction.DepthLosses(mtpLogits, targets);      // L_MTP^k, eq. 24
                total = loss + Model.MultiTokenPrediction.Combine(depth, _o.MtpWeight);       // + λ/D Σ_k, eq. 25
                mtpLosses = depth.Select(d => (double)d.item<float>()).ToArray();
            }
            else
            {
                loss = Losses.CrossEntropy(_model.forward(inputs), targets);
                total = loss;
            }
            foreach (var aux in AuxiliaryLosses) if (aux() is { } a) total = total + a;
            return total;
        });
        double lossValue = loss!.item<float>();
        double gradNorm = outcome.GradNorm;
        bool skipped = outcome.Skipped;
        Step++;
        return new StepMetrics(Step, lossValue, lr, gradNorm, skipped, null) { MtpLosses = mtpLosses };
    }

    /// <summary>Mean loss over <paramref name="batches"/> batches of <paramref name="stream"/>, without gradients, in eval mode.</summary>
    public double Evaluate(TokenWindowStream stream, int batches, Device device)
    {
        using var noGrad = torch.no_grad();
        bool was = _model.training;
        _model.eval();
        double sum = 0;
        for (int i = 0; i < batches; i++)
        {
            using var scope = torch.NewDisposeScope();
            var (x, y) = stream.Next(device);
            sum += Losses.CrossEntropy(_model.forward(x), y).item<float>();
        }
        _model.train(was);
        return sum / batches;
    }

    /// <summary>Runs all steps on <paramref name="train"/>, evaluating on <paramref name="eval"/> every EvalEvery steps and at the end.
    /// A requested <paramref name="stop"/> (Ctrl-C) ends the run after the current step; <see cref="Step"/> tells where.</summary>
    public List<StepMetrics> Run(TokenWindowStream train, TokenWindowStream eval, Device device, Action<StepMetrics>? onStep = null, StopSignal? stop = null)
    {
        var history = new List<StepMetrics>();
        while (Step < _o.Steps && stop?.Requested != true)
        {
            StepMetrics m;
            using (var scope = torch.NewDisposeScope())
            {
                var (x, y) = train.Next(device);
                m = TrainStep(x, y);
            }
            if (m.Step % _o.EvalEvery == 0 || m.Step == _o.Steps)
                m = m with { EvalLoss = Evaluate(eval, _o.EvalBatches, device) };
            history.Add(m);
            onStep?.Invoke(m);
        }
        return history;
    }
}
