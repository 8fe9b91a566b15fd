// How the per-token GRPO loss ℓ_{i,t} is reduced over the completion mask M_{i,t}, as objects: each holds its
// formula and the factor that makes gradient accumulation over micro-batches add up to the full-batch loss.
//   grpo     1/B Σ_i ( Σ_t ℓ M / Σ_t M )    per-sequence mean, then mean over sequences (DeepSeekMath eq. 3)
//   bnpo     Σ_{i,t} ℓ M / Σ_{i,t} M         token mean over this (micro-)batch
//   dapo     Σ_{i,t} ℓ M / N_tokens         token mean over the WHOLE generation batch (DAPO eq. 8)
//   dr_grpo  Σ_{i,t} ℓ M / (B · T_max)       constant normaliser (Dr. GRPO), T_max = max_completion_length
// A new aggregation is one subclass plus LossAggregators.Register; `loss_type` selects it by name.
//
// Shapes: B sequences of this (micro-)batch, T completion tokens.
using static TorchSharp.torch;

namespace WhaleTech.Grpo;

public abstract class LossAggregator
{
    /// <summary>The `loss_type` name (TRL's names for the built-in four).</summary>
    public abstract string Name { get; }

    /// <summary>The formula, for help texts.</summary>
    public abstract string Formula { get; }

    /// <summary>The loss of masked per-token losses <paramref name="masked"/> = ℓ·M [B, T] with mask <paramref name="mask"/> [B, T].</summary>
    /// <param name="totalTokens">N_tokens: completion tokens of the whole generation batch (all micro-batches).</param>
    public abstract Tensor Reduce(Tensor masked, Tensor mask, int maxCompletionLength, double totalTokens);

    /// <summary>The factor for the loss of a micro-batch of <paramref name="rows"/> of <paramref name="batchRows"/> sequences,
    /// split into <paramref name="microBatches"/>, so that the factored losses add up to the full-batch loss (exact for
    /// grpo, dr_grpo and dapo; bnpo keeps its per-micro-batch token normaliser, as TRL does).</summary>
    public abstract double MicroBatchScale(long rows, long batchRows, int microBatches);

    public override string ToString() => Name;

    sealed class Grpo : LossAggregator
    {
        public override string Name => "grpo";
        public override string Formula => "1/B Σ_i (Σ_t ℓ·M / Σ_t M)";
        public override Tensor Reduce(Tensor masked, Tensor mask, int tMax, double n) => (masked.sum(1) / mask.sum(1).clamp_min(1)).mean();
        public override double MicroBatchScale(long rows, long batchRows, int micro) => rows / (double)batchRows;
    }

    sealed class Bnpo : LossAggregator
    {
        public override string Name => "bnpo";
        public override string Formula => "Σ ℓ·M / Σ M (this micro-batch)";
        public override Tensor Reduce(Tensor masked, Tensor mask, int tMax, double n) => masked.sum() / mask.sum().clamp_min(1);
        public override double MicroBatchScale(long rows, long batchRows, int micro) => 1.0 / micro;
    }

    sealed class Dapo : LossAggregator
    {
        public override string Name => "dapo";
        public override string Formula => "Σ ℓ·M / N_tokens (whole generation batch)";
        public override Tensor Reduce(Tensor masked, Tensor mask, int tMax, double n) => masked.sum() / Math.Max(1.0, n);
        public override double MicroBatchScale(long rows, long batchRows, int micro) => 1.0;
    }

    sealed class DrGrpo : LossAggregator
    {
        public override string Name => "dr_grpo";
        public override string Formula => "Σ ℓ·M / (B · T_max)";
        public override Tensor Reduce(Tensor masked, Tensor mask, int tMax, double n) => masked.sum() / (masked.shape[0] * (double)tMax);
        public override double MicroBatchScale(long rows, long batchRows, int micro) => rows / (double)batchRows;
    }

    internal static readonly LossAggregator[] BuiltIn = [new Grpo(), new Bnpo(), new Dapo(), new DrGrpo()];
}

public static class LossAggregators
{
    /// <summary>Case-sensitive names; looked up trimmed, lower-cased, '-' read as '_' and with or without the '_'
    /// ("dr_grpo", "dr-grpo", "drgrpo"); an aggregation of a registered name replaces it and moves last.</summary>
    static readonly Runtime.NamedRegistry<LossAggregator> Registry = new(StringComparer.Ordinal, Runtime.DuplicateName.ReplaceAndMoveLast,
        initial: LossAggregator.BuiltIn.Select(a => (a.Name, a)));

    /// <summary>Adds (or replaces, by name) a loss aggregation.</summary>
    public static LossAggregator Register(LossAggregator aggregator)
    {
        ArgumentNullException.ThrowIfNull(aggregator);
        return Registry.Register(aggregator.Name, aggregator);
    }

    public static IReadOnlyList<string> Names => Registry.Names;

    /// <summary>The aggregation called <paramref name="name"/> ("dr_grpo", also "drgrpo" / "dr-grpo").</summary>
    public static LossAggregator Get(string name, string parameter = "loss_type")
    {
        var key = name?.Trim().Replace("-", "_").ToLowerInvariant();
        return Registry.Find((n, _) => n == key || n.Replace("_", "") == key) ?? throw Registry.Unknown(parameter, name);
    }
}
