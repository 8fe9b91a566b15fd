// AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization",
// Algorithm 2), with FP32 master weights and the moments m, v kept in FP32 or BF16 (DeepSeek-V3 §3.3,
// "Low-Precision Optimizer States": "we adopt the BF16 data format instead of FP32 to track the first and second
// moments in the AdamW optimizer, without incurring observable performance degradation").
//
// For every parameter θ (FP32, the master weight) with gradient g, at its step t = 1, 2, … :
//   θ ← θ · (1 − η λ)                          decoupled weight decay (Alg. 2 line 12; torch folds the schedule
//                                              multiplier η_t of the paper into η, so the decay is η·λ)
//   m ← β1 m + (1 − β1) g                      first moment  (Alg. 2 line 7)
//   v ← β2 v + (1 − β2) g²                     second moment (line 8)
//   m̂ = m / (1 − β1^t),  v̂ = v / (1 − β2^t)   bias correction (lines 9–10)
//   θ ← θ − η m̂ / (√v̂ + ε)                    (line 12)
// evaluated op for op as torch.optim.AdamW (TorchSharp 0.107) does, so MomentPrecision.Fp32 is bit-identical to it:
//   denom = √v / √(1 − β2^t) + ε ;   θ ← θ − (η / (1 − β1^t)) · m / denom   (addcdiv)
// A parameter whose .grad is null is skipped and its t does not advance (torch's rule); zero_grad zeroes the
// gradients that exist (it does not set them to null), as TorchSharp's does.
//
// BF16 moments (MomentPrecision.Bf16): m and v are stored as bfloat16 (2 + 2 bytes per parameter instead of 4 + 4).
// Each step loads them into FP32, applies the two moment updates above in FP32 with the FP32 gradient, stores them
// back rounded to nearest, ties to even (what .to(bfloat16) does), and computes this step's parameter update from
// the FP32 values before rounding (what a fused kernel does in registers). θ stays FP32, so an update far below
// θ's own BF16 ulp is not lost. What 8 significant bits (7 stored + 1 implicit) mean for the moments:
//   * one store has relative error ≤ u = 2^-8 (unit roundoff of an 8-bit significand);
//   * range is FP32's (8 exponent bits): g² down to ~1e-38 stays representable, unlike FP16, which flushes v to 0
//     for |g| below ~2.4e-4 and then divides m by ε alone;
//   * √v halves v's relative error: √(v (1 + δ)) ≈ √v (1 + δ/2), and ε is added in FP32;
//   * rounding errors accumulate like the moments themselves: e_t = β e_{t−1} + r_t with |r_t| ≤ u |m_t|, so for a
//     moment of non-decreasing size |e_t| ≤ u |m_t| / (1 − β): 3.9 % for β1 = 0.9, 7.8 % for β2 = 0.95 (DeepSeek-V3),
//     39 % for β2 = 0.99 — worst cases reached only by a constant gradient; noisy gradients average the errors;
//   * stagnation: an increment (1 − β)(g² − v) smaller than half an ulp of v (2^-9…2^-8 of v) rounds away. With
//     β2 = 0.999 (torch's default) 1 − β2 = 0.001 < 2^-9, so once v has grown to 0.2–0.35 g² it stops moving and
//     v̂ undershoots g² as the bias correction fades (AdamWOptimizerTests.Bf16SecondMomentStallsWithBeta2Of0999:
//     v̂ < 0.5 g² after 3000 steps of a constant g, so the steps are more than √2× too large). Use β2 ≤ 0.99 with BF16
//     moments (LmTrainer uses 0.95, GRPO 0.99) — or stochastic rounding, which this optimizer does not implement.
//
// State (save/load): per parameter its step t, m and v, in one safetensors file (IO/SafeTensorsWriter, written
// atomically), plus the hyper-parameters as metadata, so a resumed run continues bit-exactly.
// Shapes: every moment has its parameter's shape.
using System.Globalization;
using TorchSharp;
using WhaleTech.IO;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace WhaleTech.Training;

/// <summary>Parameters sharing one learning rate and weight decay (e.g. "decay" matrices and "no-decay" gains).</summary>
public sealed class AdamWParamGroup
{
    double _lr, _weightDecay;

    public AdamWParamGroup(IEnumerable<Parameter> parameters, double learningRate, double weightDecay = 0.0)
    {
        Parameters = parameters?.ToList() ?? throw new WhaleArgumentException("parameters", null, "must be a list of parameters");
        LearningRate = learningRate;
        WeightDecay = weightDecay;
    }

    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>η; trainers set it every step from their schedule.</summary>
    public double LearningRate { get => _lr; set => _lr = Guard.NonNegative("learning_rate", value); }

    /// <summary>λ of the decoupled decay θ ← θ (1 − η λ).</summary>
    public double WeightDecay { get => _weightDecay; set => _weightDecay = Guard.NonNegative("weight_decay", value); }
}

public sealed class AdamWOptimizer : IDisposable
{
    public const string Format = "whaletech.adamw";

    sealed class ParamState(Parameter parameter, Tensor m, Tensor v)
    {
        public Parameter Parameter { get; } = parameter;
        public Tensor M { get; } = m;                   // first moment, shape of θ, dtype of the precision
        public Tensor V { get; } = v;                   // second moment
        public long Step;                               // t: steps this parameter has taken
    }

    readonly List<(AdamWParamGroup Group, ParamState[] States)> _groups = [];

    public IReadOnlyList<AdamWParamGroup> ParamGroups { get; }
    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    public MomentPrecision Moments { get; }

    public AdamWOptimizer(IEnumerable<AdamWParamGroup> groups, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        MomentPrecision moments = MomentPrecision.Fp32)
    {
        Beta1 = Beta("beta1", beta1);
        Beta2 = Beta("beta2", beta2);
        Eps = Guard.NonNegative("eps", eps);
        if (!Enum.IsDefined(moments)) throw new WhaleArgumentException("optimizer_moments", moments, "must be fp32 or bf16");
        Moments = moments;
        var seen = new HashSet<IntPtr>();
        foreach (var g in groups ?? throw new WhaleArgumentException("groups", null, "must be a list of parameter groups"))
        {
            var states = new ParamState[g.Parameters.Count];
            for (int i = 0; i < states.Length; i++)
            {
                var p = g.Parameters[i];
                if (p is null || p.IsInvalid) throw new WhaleArgumentException("parameters", "null or disposed", "must be live parameters");
                if (!p.is_floating_point()) throw new WhaleArgumentException("parameters", p.dtype, "must be floating-point");
                if (!seen.Add(p.Handle)) throw new WhaleArgumentException("parameters", "a parameter listed twice", "each parameter must appear in exactly one group");
                var m = zeros(p.shape, dtype: moments.DType(), device: p.device).DetachFromDisposeScope();   // shape of θ
                var v = zeros(p.shape, dtype: moments.DType(), device: p.device).DetachFromDisposeScope();
                states[i] = new ParamState(p, m, v);
            }
            _groups.Add((g, states));
        }
        ParamGroups = _groups.Select(x => x.Group).ToList();
    }

    /// <summary>One group: all <paramref name="parameters"/> with learning rate η and weight decay λ.</summary>
    public AdamWOptimizer(IEnumerable<Parameter> parameters, double learningRate, double weightDecay = 0.0, double beta1 = 0.9,
        double beta2 = 0.999, double eps = 1e-8, MomentPrecision moments = MomentPrecision.Fp32)
        : this([new AdamWParamGroup(parameters, learningRate, weightDecay)], beta1, beta2, eps, moments) { }

    static double Beta(string name, double b)
        => b >= 0 && b < 1 ? b : throw new WhaleArgumentException(name, b, "must be in [0, 1)");

    IEnumerable<ParamState> States => _groups.SelectMany(g => g.States);

    /// <summary>Number of parameter tensors handled.</summary>
    public int ParameterCount => _groups.Sum(g => g.States.Length);

    /// <summary>Bytes of m and v together: 8 per parameter element in FP32, 4 in BF16 (steps not counted).</summary>
    public long StateBytes => States.Sum(s => s.M.numel() * s.M.ElementSize + s.V.numel() * s.V.ElementSize);

    /// <summary>The largest per-parameter step count t (0 before any step).</summary>
    public long StepCount => States.Select(s => s.Step).DefaultIfEmpty(0).Max();

    /// <summary>m and v of one parameter (for inspection and tests; do not modify).</summary>
    public (Tensor M, Tensor V, long Step) StateOf(Parameter p)
    {
        var s = States.FirstOrDefault(s => s.Parameter.Handle == p.Handle)
                ?? throw new WhaleArgumentException("parameter", p.name ?? "?", "must be one of the optimizer's parameters");
        return (s.M, s.V, s.Step);
    }

    /// <summary>Zeroes every existing gradient (a null gradient stays null).</summary>
    public void zero_grad()
    {
        foreach (var s in States)
        {
            using var grad = s.Parameter.grad;
            grad?.zero_();
        }
    }

    /// <summary>One AdamW update of every parameter that has a gradient.</summary>
    public void step()
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        foreach (var (group, states) in _groups)
        {
            double lr = group.LearningRate, decay = group.WeightDecay;
            foreach (var s in states)
            {
                var grad = s.Parameter.grad;                                         // shape of θ
                if (grad is null) continue;
                s.Step++;
                var theta = s.Parameter;
                if (lr * decay != 0) theta.mul_(1 - lr * decay);                     // θ ← θ (1 − ηλ)
                double bc1 = 1 - Math.Pow(Beta1, s.Step), bc2 = 1 - Math.Pow(Beta2, s.Step);
                // FP32 moments are updated in place; BF16 moments are loaded into FP32 copies first.
                var m = Moments == MomentPrecision.Fp32 ? s.M : s.M.to_type(ScalarType.Float32);
                var v = Moments == MomentPrecision.Fp32 ? s.V : s.V.to_type(ScalarType.Float32);
                m.mul_(Beta1).add_(grad, alpha: 1 - Beta1);                          // m ← β1 m + (1 − β1) g
                v.mul_(Beta2).addcmul_(grad, grad, value: 1 - Beta2);                // v ← β2 v + (1 − β2) g²
                if (Moments == MomentPrecision.Bf16)
                {
                    s.M.copy_(m);                                                    // round to nearest even, 2 bytes
                    s.V.copy_(v);
                }
                var denom = (v.sqrt() / Math.Sqrt(bc2)).add_(Eps);                  // √v̂ + ε (FP32)
                theta.addcdiv_(m, denom, value: -lr / bc1);                          // θ ← θ − η m̂ / (√v̂ + ε)
            }
        }
    }

    // ---- state: save / load --------------------------------------------------------------------------

    static string Num(double x) => x.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>Writes steps, m, v and hyper-parameters to one safetensors file, atomically.</summary>
    public void Save(string path)
    {
        var states = States.ToList();
        using var scope = torch.NewDisposeScope();
        var tensors = new List<(string, Tensor)> { ("step", torch.tensor(states.Select(s => s.Step).ToArray(), dtype: ScalarType.Int64)) };
        for (int i = 0; i < states.Count; i++)
        {
            tensors.Add(($"m.{i}", states[i].M));
            tensors.Add(($"v.{i}", states[i].V));
        }
        var meta = new Dictionary<string, string>
        {
            ["format"] = Format, ["version"] = "1", ["moments"] = Moments.Name(),
            ["beta1"] = Num(Beta1), ["beta2"] = Num(Beta2), ["eps"] = Num(Eps), ["groups"] = _groups.Count.ToString(CultureInfo.InvariantCulture),
        };
        for (int k = 0; k < _groups.Count; k++)
        {
            meta[$"group.{k}.params"] = _groups[k].States.Length.ToString(CultureInfo.InvariantCulture);
            meta[$"group.{k}.lr"] = Num(_groups[k].Group.LearningRate);
            meta[$"group.{k}.weight_decay"] = Num(_groups[k].Group.WeightDecay);
        }
        SafeTensorsWriter.Write(path, tensors, meta);
    }

    /// <summary>Restores steps, m, v and the groups' learning rates from a file written by <see cref="Save"/>
    /// for the same parameters (count, shapes) and hyper-parameters (β1, β2, ε, weight decays, precision).
    /// Everything is checked before anything is changed.</summary>
    public void Load(string path)
    {
        if (!File.Exists(path)) throw new WhaleArgumentException("optimizer state", path, "must name an existing file written by AdamWOptimizer.Save");
        var file = SafeTensorsFile.Open(path);
        var meta = file.Metadata ?? new Dictionary<string, string>();
        string Meta(string key) => meta.TryGetValue(key, out var v) ? v
            : throw new WhaleFormatException(path, $"not an AdamWOptimizer state (metadata '{key}' missing)");
        if (Meta("format") != Format) throw new WhaleFormatException(path, $"format is '{meta["format"]}', expected '{Format}'");
        void Same(string key, string mine, string what)
        {
            if (Meta(key) != mine) throw new WhaleFormatException(path, $"was written with {what} = {meta[key]}, but this optimizer has {mine}");
        }
        Same("moments", Moments.Name(), "optimizer_moments");
        Same("beta1", Num(Beta1), "beta1");
        Same("beta2", Num(Beta2), "beta2");
        Same("eps", Num(Eps), "eps");
        Same("groups", _groups.Count.ToString(CultureInfo.InvariantCulture), "parameter groups");
        for (int k = 0; k < _groups.Count; k++)
        {
            Same($"group.{k}.params", _groups[k].States.Length.ToString(CultureInfo.InvariantCulture), $"group {k}'s parameter count");
            Same($"group.{k}.weight_decay", Num(_groups[k].Group.WeightDecay), $"group {k}'s weight_decay");
        }
        var states = States.ToList();
        using var scope = torch.NewDisposeScope();
        var steps = file.ToTensor("step");
        if (steps.dtype != ScalarType.Int64 || steps.numel() != states.Count)
            throw new WhaleFormatException(path, $"'step' must be int64 [{states.Count}]");
        var stepValues = steps.data<long>().ToArray();
        var loaded = new List<(Tensor M, Tensor V)>();
        for (int i = 0; i < states.Count; i++)
        {
            var m = file.ToTensor($"m.{i}");
            var v = file.ToTensor($"v.{i}");
            foreach (var (t, name) in new[] { (m, "m"), (v, "v") })
                if (t.dtype != Moments.DType() || !t.shape.SequenceEqual(states[i].Parameter.shape))
                    throw new WhaleFormatException(path, $"{name}.{i} is {t.dtype} [{string.Join(", ", t.shape)}], expected {Moments.DType()} [{string.Join(", ", states[i].Parameter.shape)}]");
            loaded.Add((m, v));
        }
        for (int i = 0; i < states.Count; i++)
        {
            states[i].M.copy_(loaded[i].M);
            states[i].V.copy_(loaded[i].V);
            states[i].Step = stepValues[i];
        }
        for (int k = 0; k < _groups.Count; k++)
            _groups[k].Group.LearningRate = double.Parse(Meta($"group.{k}.lr"), CultureInfo.InvariantCulture);
    }

    public void Dispose()
    {
        foreach (var s in States) { s.M.Dispose(); s.V.Dispose(); }
    }
}
