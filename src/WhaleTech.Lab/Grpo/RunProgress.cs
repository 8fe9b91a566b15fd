// Progress of a long run for a person watching it: steps/s over a moving window of recent steps (held-out
// evaluations and checkpoints included, since they cost wall time too), the ETA of the remaining steps at that
// rate, and the share of a GRPO step's time spent generating, scoring and updating (step_time/* of GrpoTrainer).
// The clock is injectable so the arithmetic is testable (RunProgressTests).
using System.Diagnostics;
using System.Globalization;

namespace WhaleTech.Lab.Grpo;

public sealed class RunProgress
{
    readonly Func<double> _now;
    readonly int _window;
    readonly Queue<(int Step, double Seconds)> _marks = new();
    readonly double _start;

    /// <param name="firstStep">The step the run (or resumed run) starts from.</param>
    /// <param name="window">How many recent steps the rate is measured over.</param>
    /// <param name="clock">Seconds since any fixed origin (default: a stopwatch).</param>
    public RunProgress(int firstStep = 0, int window = 20, Func<double>? clock = null)
    {
        if (clock is null) { var sw = Stopwatch.StartNew(); clock = () => sw.Elapsed.TotalSeconds; }
        _now = clock;
        _window = Math.Max(1, window);
        _start = _now();
        _marks.Enqueue((firstStep, _start));
    }

    /// <summary>Records that <paramref name="step"/> has just completed.</summary>
    public void Mark(int step)
    {
        _marks.Enqueue((step, _now()));
        while (_marks.Count > _window + 1) _marks.Dequeue();
    }

    public int LastStep => _marks.Last().Step;
    public double ElapsedSeconds => _marks.Last().Seconds - _start;

    /// <summary>Steps per second over the window; NaN before the first completed step.</summary>
    public double StepsPerSecond
    {
        get
        {
            var (s0, t0) = _marks.Peek(); var (s1, t1) = _marks.Last();
            return s1 > s0 && t1 > t0 ? (s1 - s0) / (t1 - t0) : double.NaN;
        }
    }

    /// <summary>Seconds left for the steps up to <paramref name="total"/> at the current rate; null when unknown.</summary>
    public double? EtaSeconds(int total)
    {
        double r = StepsPerSecond;
        return double.IsFinite(r) && r > 0 ? Math.Max(0, total - LastStep) / r : null;
    }

    /// <summary>"1h02m", "4m05s", "12s"; "?" when unknown.</summary>
    public static string Duration(double? seconds)
    {
        if (seconds is not { } s || !double.IsFinite(s)) return "?";
        var t = TimeSpan.FromSeconds(Math.Round(s));
        return t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:00}m" : t.TotalMinutes >= 1 ? $"{t.Minutes}m{t.Seconds:00}s" : $"{t.Seconds}s";
    }

    /// <summary>"1.23 steps/s, ETA 4m05s (elapsed 1m10s)".</summary>
    public string Describe(int total)
    {
        double r = StepsPerSecond;
        string rate = !double.IsFinite(r) ? "? steps/s" : r >= 1 ? r.ToString("F2", CultureInfo.InvariantCulture) + " steps/s"
            : (1 / r).ToString("F2", CultureInfo.InvariantCulture) + " s/step";
        return $"{rate}, ETA {Duration(EtaSeconds(total))} (elapsed {Duration(ElapsedSeconds)})";
    }

    /// <summary>Shares of step_time/total spent in generation, scoring and update (NaN when a key is missing).</summary>
    public static (double Generation, double Scoring, double Update) TimeShares(IReadOnlyDictionary<string, double> m)
    {
        double total = m.TryGetValue("step_time/total", out var t) && t > 0 ? t : double.NaN;
        double Get(string k) => m.TryGetValue(k, out var v) ? v / total : double.NaN;
        return (Get("step_time/generation"), Get("step_time/scoring"), Get("step_time/update"));
    }

    /// <summary>"gen 62% · score 1% · update 37%".</summary>
    public static string DescribeShares(IReadOnlyDictionary<string, double> m)
    {
        var (g, s, u) = TimeShares(m);
        static string P(double x) => double.IsFinite(x) ? (100 * x).ToString("F0", CultureInfo.InvariantCulture) + "%" : "?";
        return $"gen {P(g)} · score {P(s)} · update {P(u)}";
    }
}
