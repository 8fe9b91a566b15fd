// Scaling policies: how an FP8 operand's scale is found at each step, chosen by name in a recipe
// (Fp8Recipe.ScalingPolicy):
//   current  the scale comes from this tensor's own amax, per scale group (DeepSeek-V3 §3.3.2: online amax per
//            1×128 tile / 128×128 block; also per-tensor and per-row) — stateless;
//   delayed  the scale comes from the amax history of that operand (NVIDIA Transformer Engine's DelayedScaling:
//            max of the last L amax values, saturating cast), per-tensor only — one state per operand per layer.
// A new policy is one subclass plus Fp8ScalingPolicies.Register.
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Fp8;

/// <summary>The scaling state of one operand (x, W or dy) of one FP8 linear.</summary>
public abstract class Fp8OperandScaler
{
    /// <summary>The values the GEMM sees: <paramref name="t"/> rounded to FP8 with this operand's scale (float32).</summary>
    public abstract Tensor FakeQuantize(Tensor t, OperandRecipe operand, Fp8Scaling scaling);
}

public abstract class Fp8ScalingPolicy
{
    /// <summary>The name recipes use ("current", "delayed").</summary>
    public abstract string Name { get; }

    /// <summary>True when the policy keeps no state (one scaler may serve every operand).</summary>
    public virtual bool Stateless => false;

    /// <summary>A fresh scaler for one operand of one layer.</summary>
    public abstract Fp8OperandScaler CreateScaler();

    /// <summary>Checks that the policy can scale <paramref name="operand"/> (named <paramref name="role"/>).</summary>
    public virtual void Validate(string role, OperandRecipe operand) { }

    public override string ToString() => Name;
}

/// <summary>Current (online) scaling: each tensor's own amax per scale group.</summary>
public sealed class CurrentScalingPolicy : Fp8ScalingPolicy
{
    public override string Name => "current";
    public override bool Stateless => true;
    public override Fp8OperandScaler CreateScaler() => Scaler.Instance;

    sealed class Scaler : Fp8OperandScaler
    {
        public static readonly Scaler Instance = new();
        public override Tensor FakeQuantize(Tensor t, OperandRecipe op, Fp8Scaling s) => Fp8Quantizer.FakeQuantize(t.contiguous(), op.Format, op.Granularity, s);
    }
}

/// <summary>Delayed scaling (Transformer Engine): the max of the operand's last <see cref="HistoryLength"/> amax values.</summary>
public sealed class DelayedScalingPolicy(int historyLength = 16, int margin = 0) : Fp8ScalingPolicy
{
    public int HistoryLength { get; } = (int)Guard.Positive("historyLength", historyLength);
    public int Margin { get; } = margin;
    public override string Name => "delayed";
    public override Fp8OperandScaler CreateScaler() => new Scaler(new DelayedScaling(HistoryLength, Margin));

    public override void Validate(string role, OperandRecipe operand)
    {
        if (operand.Precision == OperandPrecision.Fp8 && operand.Granularity != Fp8Granularity.PerTensor)
            throw new WhaleArgumentException(role + " granularity", operand.Granularity, "must be tensor: delayed scaling keeps one amax history per tensor");
    }

    sealed class Scaler(DelayedScaling state) : Fp8OperandScaler
    {
        public override Tensor FakeQuantize(Tensor t, OperandRecipe op, Fp8Scaling s)
        {
            using var q = state.Quantize(t.contiguous(), op.Format, s);
            return q.Dequantize();
        }
    }
}

public static class Fp8ScalingPolicies
{
    /// <summary>Case-sensitive names, looked up trimmed and lower-cased; a policy of a registered name replaces it and moves last.</summary>
    static readonly NamedRegistry<Fp8ScalingPolicy> Registry = new(StringComparer.Ordinal, DuplicateName.ReplaceAndMoveLast, key: n => n.Trim().ToLowerInvariant(),
        initial: new Fp8ScalingPolicy[] { new CurrentScalingPolicy(), new DelayedScalingPolicy() }.Select(p => (p.Name, p)));

    /// <summary>Adds (or replaces, by name) a scaling policy.</summary>
    public static Fp8ScalingPolicy Register(Fp8ScalingPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        return Registry.Register(policy.Name, policy);
    }

    public static IReadOnlyList<string> Names => Registry.Names;

    public static Fp8ScalingPolicy Get(string name, string parameter = "scaling_policy") => Registry.Get(name, parameter);
}
