// Verifiable math tasks for GRPO (DeepSeekMath §4; DeepSeek-R1 §2.2 "rule-based rewards"): each problem
// has a question the policy sees and a checker that scores any text it writes. Four families, each with a
// difficulty knob:
//   addition        a+b=        operands uniform in [0, 10^digits)
//   multiplication  a*b=        operands uniform in [0, 10^digits)
//                   a+b=r:      with reverse_answer: the answer is written least-significant digit first
//                               (46+37=r: → <answer>38</answer> for 83). Lee et al. 2023, "Teaching Arithmetic
//                               to Small Transformers" §4: each output digit then depends only on operand digits
//                               and the carry of digits already written, which a small model learns far earlier.
//                   07+45=      with pad_operands: operands zero-padded to `digits` and the reference answer to its
//                               longest length (digits + 1 for addition, 2·digits for multiplication), so every
//                               digit sits at a fixed position (07+45=r: → <answer>250</answer>); any answer with
//                               the right value still counts (leading zeros are allowed in every format).
//   countdown       3,7,9>30:   reach the target with + - * / ( ) using every number exactly once
//                               (TinyZero's Countdown); `numbers` 3–4, values in [1, max_number]
//   linear          3x+5=20;x=  solve a*x+b=c for the integer x; |a| ≤ max_coefficient, |x| ≤ max_number
// Splits: the held-out set is drawn from its own seeded stream; training problems come from a stateless
// stream keyed by (seed, step, slot) and skip any question of the held-out set, so the two never overlap
// and a resumed run draws exactly the problems the uninterrupted run would have drawn.
namespace WhaleTech.Grpo;

using WhaleTech.Runtime;

/// <summary>One problem: the question text, the reference answer, and (Countdown) the numbers and target.</summary>
public sealed record MathProblem(string Task, string Question, string Answer, int[] Numbers, long Target)
{
    /// <summary>A worked solution text in the answer format — the SFT target.</summary>
    public string Solution => PromptTemplate.FormatAnswer(Answer);
}

/// <summary>The difficulty knobs a task factory may read (GrpoOptions: digits, numbers, max_number, max_coefficient,
/// reverse_answer, pad_operands).</summary>
public sealed record TaskKnobs(int Digits = 3, int Numbers = 3, int MaxNumber = 20, int MaxCoefficient = 9, bool ReverseAnswer = false, bool PadOperands = false);

/// <summary>The task registry: a new GRPO task is one MathTask subclass plus one <see cref="Register"/> line.</summary>
public static class GrpoTasks
{
    /// <summary>Case-sensitive names as given; a task of a registered name replaces it and moves last.</summary>
    static readonly NamedRegistry<Func<TaskKnobs, MathTask>> Registry = new(StringComparer.Ordinal, DuplicateName.ReplaceAndMoveLast, initial:
    [
        ("addition", k => new ArithmeticTask('+', k.Digits, k.ReverseAnswer, k.PadOperands)),
        ("multiplication", k => new ArithmeticTask('*', k.Digits, k.ReverseAnswer, k.PadOperands)),
        ("countdown", k => new CountdownTask(k.Numbers, k.MaxNumber)),
        ("linear", k => new LinearEquationTask(k.MaxCoefficient, k.MaxNumber)),
    ]);

    /// <summary>Tasks that read reverse_answer and pad_operands (digit-by-digit answers).</summary>
    static readonly HashSet<string> DigitTasks = ["addition", "multiplication"];

    /// <summary>Adds (or replaces) a task; <paramref name="digitOptions"/>: it honours reverse_answer / pad_operands.</summary>
    public static void Register(string name, Func<TaskKnobs, MathTask> create, bool digitOptions = false)
    {
        ArgumentNullException.ThrowIfNull(create);
        lock (DigitTasks)
        {
            Registry.Register(name, create);
            if (digitOptions) DigitTasks.Add(name); else DigitTasks.Remove(name);
        }
    }

    public static IReadOnlyList<string> Names => Registry.Names;

    public static MathTask Create(string name, TaskKnobs knobs)
    {
        var create = Registry.Get(name, "task");
        string[] digitTasks;
        bool digits;
        lock (DigitTasks) { digitTasks = [.. DigitTasks]; digits = DigitTasks.Contains(name); }
        if (knobs.ReverseAnswer && !digits)
            throw new WhaleArgumentException("reverse_answer", name, "applies to " + string.Join(" and ", digitTasks) + " only");
        if (knobs.PadOperands && !digits)
            throw new WhaleArgumentException("pad_operands", name, "applies to " + string.Join(" and ", digitTasks) + " only");
        return create(knobs);
    }
}

public abstract class MathTask
{
    public abstract string Name { get; }
    /// <summary>Draws one problem from <paramref name="rng"/>.</summary>
    public abstract MathProblem Sample(Random rng);
    /// <summary>True when <paramref name="answer"/> (the text inside the answer tags) solves <paramref name="p"/>.</summary>
    public abstract bool IsCorrect(MathProblem p, string answer);
    /// <summary>Partial credit in [0, 1] for a wrong answer (1 only when correct).</summary>
    public abstract double PartialCredit(MathProblem p, string answer);

    /// <summary>Builds a registered task from its name and difficulty knobs (the CLI's --task, --digits, ...).</summary>
    public static MathTask Create(string name, int digits = 3, int numbers = 3, int maxNumber = 20, int maxCoefficient = 9,
        bool reverseAnswer = false, bool padOperands = false)
        => GrpoTasks.Create(name, new TaskKnobs(digits, numbers, maxNumber, maxCoefficient, reverseAnswer, padOperands));

    /// <summary>The held-out set: <paramref name="count"/> distinct problems from the held-out stream.</summary>
    public IReadOnlyList<MathProblem> HeldOut(int seed, int count) => Distinct(HashCode32(seed, 0x4E1D, 0, 0), count, new HashSet<string>());

    /// <summary>A validation set for decisions during training (when to stop SFT): its own stream, never a
    /// held-out question, so the held-out numbers stay untouched by any choice made on them.</summary>
    public IReadOnlyList<MathProblem> Validation(int seed, int count, IReadOnlySet<string> heldOut) => Distinct(HashCode32(seed, 0x7A11D, 0, 0), count, heldOut);

    IReadOnlyList<MathProblem> Distinct(int streamSeed, int count, IReadOnlySet<string> exclude)
    {
        var rng = new Random(streamSeed);
        var seen = new HashSet<string>();
        var list = new List<MathProblem>(count);
        for (int tries = 0; list.Count < count && tries < count * 50; tries++)
        {
            var p = Sample(rng);
            if (!exclude.Contains(p.Question) && seen.Add(p.Question)) list.Add(p);
        }
        return list;
    }

    /// <summary>The training problem for (seed, step, slot); never a held-out question.</summary>
    public MathProblem Train(int seed, long step, int slot, IReadOnlySet<string> heldOut)
    {
        var rng = new Random(HashCode32(seed, 0x7A1, step, slot));
        for (int tries = 0; ; tries++)
        {
            var p = Sample(rng);
            if (!heldOut.Contains(p.Question) || tries > 1000) return p;
        }
    }

    /// <summary>A stable 32-bit seed from a tuple (SplitMix64 mixing; independent of .NET's randomized string hashes).</summary>
    public static int HashCode32(long a, long b, long c, long d)
        => (int)(Streams.Mix(Streams.Mix(Streams.Mix((ulong)a ^ 0x9E3779B97F4A7C15UL, (ulong)b), (ulong)c), (ulong)d) >> 33);
}

/// <summary>n-digit addition or multiplication; with <see cref="ReverseAnswer"/> the question ends in "r:" and
/// the answer is written least-significant digit first; with <see cref="PadOperands"/> every number has a fixed width.</summary>
public sealed class ArithmeticTask : MathTask
{
    /// <summary>What a reversed question ends with, after the '='.</summary>
    public const string ReversedMarker = "r:";
    readonly char _op;
    public int Digits { get; }
    public bool ReverseAnswer { get; }
    public bool PadOperands { get; }
    public ArithmeticTask(char op, int digits, bool reverseAnswer = false, bool padOperands = false)
    {
        _op = op;
        Digits = (int)Guard.InRange("digits", digits, 1, 9);
        ReverseAnswer = reverseAnswer;
        PadOperands = padOperands;
    }
    public override string Name => _op == '+' ? "addition" : "multiplication";

    public override MathProblem Sample(Random rng)
    {
        long max = (long)Math.Pow(10, Digits);
        long a = rng.NextInt64(max), b = rng.NextInt64(max);
        long c = _op == '+' ? a + b : a * b;
        int width = PadOperands ? Digits : 1, answerWidth = PadOperands ? (_op == '+' ? Digits + 1 : 2 * Digits) : 1;
        string question = a.ToString().PadLeft(width, '0') + _op + b.ToString().PadLeft(width, '0') + "=" + (ReverseAnswer ? ReversedMarker : "");
        string answer = c.ToString().PadLeft(answerWidth, '0');
        return new MathProblem(Name, question, ReverseAnswer ? AnswerParser.Reverse(answer) : answer, [], c);
    }

    public override bool IsCorrect(MathProblem p, string answer) => AnswerParser.ParseInteger(answer, ReverseAnswer) == p.Target;
    public override double PartialCredit(MathProblem p, string answer) => AnswerParser.DigitCredit(answer, p.Answer, ReverseAnswer);
}

/// <summary>Countdown: numbers and a target; any + − × ÷ expression using each number exactly once.</summary>
public sealed class CountdownTask : MathTask
{
    public int Count { get; }
    public int MaxNumber { get; }
    public CountdownTask(int numbers, int maxNumber)
    {
        Count = (int)Guard.InRange("numbers", numbers, 2, 6);
        MaxNumber = (int)Guard.InRange("max_number", maxNumber, 2, 1000);
    }
    public override string Name => "countdown";

    public override MathProblem Sample(Random rng)
    {
        for (; ; )
        {
            var nums = Enumerable.Range(0, Count).Select(_ => rng.Next(1, MaxNumber + 1)).ToArray();
            // Build a random expression tree over a random order of the numbers; keep it if the value is a
            // positive integer that every intermediate step kept exact.
            var order = nums.OrderBy(_ => rng.Next()).ToList();
            string expr = order[0].ToString();
            double value = order[0];
            for (int i = 1; i < order.Count; i++)
            {
                char op = "+-*/"[rng.Next(4)];
                double v2 = op switch { '+' => value + order[i], '-' => value - order[i], '*' => value * order[i], _ => value / order[i] };
                if (op == '/' && (value % order[i] != 0)) { op = '+'; v2 = value + order[i]; }
                bool wrap = (op == '*' || op == '/') && expr.IndexOfAny(['+', '-']) >= 0;
                expr = (wrap ? "(" + expr + ")" : expr) + op + order[i];
                value = v2;
            }
            if (value >= 1 && value <= 10_000 && value == Math.Floor(value))
                return new MathProblem(Name, string.Join(",", nums) + ">" + (long)value + ":", expr, nums, (long)value);
        }
    }

    public override bool IsCorrect(MathProblem p, string answer)
        => UsesExactly(p, answer) && ExpressionEvaluator.TryEvaluate(answer, out var v) && Math.Abs(v - p.Target) < 1e-9;

    public override double PartialCredit(MathProblem p, string answer)
    {
        if (IsCorrect(p, answer)) return 1;
        if (!UsesExactly(p, answer) || !ExpressionEvaluator.TryEvaluate(answer, out var v)) return 0;
        return 0.5 * Math.Max(0, 1 - Math.Abs(v - p.Target) / Math.Max(1, Math.Abs(p.Target)));   // valid but off
    }

    static bool UsesExactly(MathProblem p, string answer)
    {
        var used = ExpressionEvaluator.Numbers(answer);
        return used is not null && used.OrderBy(x => x).SequenceEqual(p.Numbers.Select(x => (long)x).OrderBy(x => x));
    }
}

/// <summary>Linear equations a·x + b = c with an integer solution x.</summary>
public sealed class LinearEquationTask : MathTask
{
    public int MaxCoefficient { get; }
    public int MaxSolution { get; }
    public LinearEquationTask(int maxCoefficient, int maxSolution)
    {
        MaxCoefficient = (int)Guard.InRange("max_coefficient", maxCoefficient, 1, 1000);
        MaxSolution = (int)Guard.InRange("max_number", maxSolution, 1, 100_000);
    }
    public override string Name => "linear";

    public override MathProblem Sample(Random rng)
    {
        int a = rng.Next(1, MaxCoefficient + 1) * (rng.Next(2) == 0 ? 1 : -1);
        int x = rng.Next(-MaxSolution, MaxSolution + 1);
        int b = rng.Next(-MaxSolution, MaxSolution + 1);
        long c = (long)a * x + b;
        string lhs = (a == 1 ? "" : a == -1 ? "-" : a.ToString()) + "x" + (b == 0 ? "" : b > 0 ? "+" + b : b.ToString());
        return new MathProblem(Name, $"{lhs}={c};x=", x.ToString(), [], x);
    }

    public override bool IsCorrect(MathProblem p, string answer) => AnswerParser.ParseInteger(answer) == p.Target;
    public override double PartialCredit(MathProblem p, string answer)
        => AnswerParser.ParseInteger(answer) is { } v ? Math.Max(0, 1 - Math.Abs(v - p.Target) / (double)Math.Max(1, MaxSolution)) * (v == p.Target ? 1 : 0.5) : 0;
}
