// Rule-based rewards (DeepSeek-R1 §2.2.2): accuracy (the verifier says the answer is right), format (the
// completion follows the template) and partial credit (close answers get a share). Several functions are
// combined with weights as TRL's GRPOTrainer does with `reward_funcs` and `reward_weights`:
//     r_i = Σ_k w_k · f_k(problem, completion_i)
// Each function's own mean is logged as rewards/<name>/mean.
using WhaleTech.Runtime;

namespace WhaleTech.Grpo;

/// <summary>Scores one completion (text after the prompt, special tokens removed) of one problem.</summary>
public delegate double RewardFunction(MathProblem problem, string completion);

public sealed record WeightedReward(string Name, RewardFunction Function, double Weight);

public static class Rewards
{
    /// <summary>1 when the last &lt;answer&gt; span solves the problem, else 0.</summary>
    public static RewardFunction Accuracy(MathTask task)
        => (p, c) => AnswerParser.ExtractAnswer(c) is { } a && task.IsCorrect(p, a) ? 1.0 : 0.0;

    /// <summary>1 when the completion is exactly [&lt;think&gt;…&lt;/think&gt;]&lt;answer&gt;…&lt;/answer&gt;, else 0.</summary>
    public static RewardFunction Format() => (_, c) => AnswerParser.IsWellFormatted(c) ? 1.0 : 0.0;

    /// <summary>The task's partial credit in [0, 1] (digit matches, closeness to the target).</summary>
    public static RewardFunction Partial(MathTask task)
        => (p, c) => AnswerParser.ExtractAnswer(c) is { } a ? task.PartialCredit(p, a) : 0.0;

    /// <summary>Case-sensitive names as given; a reward of a registered name replaces it and moves last.</summary>
    static readonly NamedRegistry<Func<MathTask, RewardFunction>> Registry = new(StringComparer.Ordinal, DuplicateName.ReplaceAndMoveLast, initial:
    [
        ("accuracy", Accuracy),
        ("format", _ => Format()),
        ("partial", Partial),
    ]);

    /// <summary>Adds (or replaces) a reward function by name (TRL's reward_funcs); `--rewards name:weight` selects it.</summary>
    public static void Register(string name, Func<MathTask, RewardFunction> create)
    {
        ArgumentNullException.ThrowIfNull(create);
        if (string.IsNullOrWhiteSpace(name) || name.Contains(':') || name.Contains(','))
            throw new WhaleArgumentException("name", name, "must be a non-empty reward name without ':' or ','");
        Registry.Register(name, create);
    }

    /// <summary>The registered reward names.</summary>
    public static IReadOnlyList<string> Names => Registry.Names;

    /// <summary>Parses "accuracy:1,format:0.1" (weight defaults to 1) into weighted reward functions.</summary>
    public static IReadOnlyList<WeightedReward> Parse(string spec, MathTask task)
    {
        if (string.IsNullOrWhiteSpace(spec)) throw new WhaleArgumentException("rewards", spec, "must name at least one of " + string.Join(", ", Names) + " (e.g. accuracy:1,format:0.1)");
        var list = new List<WeightedReward>();
        foreach (var part in spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var kv = part.Split(':');
            double w = 1;
            if (kv.Length > 2 || (kv.Length == 2 && !double.TryParse(kv[1], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out w)) || !double.IsFinite(w))
                throw new WhaleArgumentException("rewards", spec, "must be name[:weight] pairs separated by commas, e.g. accuracy:1,format:0.1");
            if (!Registry.TryGet(kv[0], out var create)) throw new WhaleArgumentException("rewards", kv[0], "reward functions are " + string.Join(", ", Names));
            RewardFunction f = create(task);
            if (list.Any(r => r.Name == kv[0])) throw new WhaleArgumentException("rewards", spec, "must not name a reward function twice");
            list.Add(new WeightedReward(kv[0], f, w));
        }
        return list;
    }

    /// <summary>Total weighted reward per completion, and each function's raw scores.</summary>
    public static (double[] Total, Dictionary<string, double[]> PerFunction) Score(
        IReadOnlyList<WeightedReward> rewards, IReadOnlyList<MathProblem> problems, IReadOnlyList<string> completions)
    {
        int n = completions.Count;
        var total = new double[n];
        var per = new Dictionary<string, double[]>();
        foreach (var r in rewards)
        {
            var s = new double[n];
            for (int i = 0; i < n; i++) { s[i] = r.Function(problems[i], completions[i]); total[i] += r.Weight * s[i]; }
            per[r.Name] = s;
        }
        return (total, per);
    }
}
