// Convergence of the MLA frontier across run lengths. A run's own eval curve cannot show that a variant has
// converged: every run warms up and then anneals its learning rate on a cosine over its whole length, so its eval loss
// keeps falling until the last step whatever the length. The test here trains the same variants and seeds for
// several lengths S₁ < S₂ < … (one frontier per length, pooled with `whale mla frontier --from`) and asks how much
// longer training still buys.
//
// Seed s draws the same initialization, data stream and eval set at every length, so the change of a seed's excess
// loss from one length to the next is paired: Δ = L(S_{k+1}) − L(S_k), mean and 95 % Student-t half-width over the
// seeds both lengths have. It is expressed per doubling of the steps, g = −Δ / log₂(S_{k+1} / S_k), so that lengths
// that are not doublings compare. A variant counts as converged when its last step change gains less than the
// tolerance per doubling at 95 % confidence (g + half-width < tolerance), an equivalence test rather than a failure to
// find a difference. When the gains shrink by a ratio r = g_last / g_before < 1 per doubling, the geometric tail
// g_last · r / (1 − r) estimates what every further doubling together would still gain. For a variant that has not
// passed, "seeds to pass" is how many seeds the same test would need if the last gain's mean and spread over seeds held
// (SeedStatistics.SeedsToBound): none while the mean gain itself is at or above the tolerance (a longer run is needed,
// not more seeds).
//
// Which estimator: the sampled excess loss (the frontier's number) carries the eval set's sampling noise, which does
// not cancel between two lengths' models and is, past ≈ 24k steps, most of a gain's spread (FrontierEvalNoise.cs). So
// a step change is tested on the exact KL when every run of both lengths recorded it (MlaFrontier.KlSets): averaged
// over the shared eval sets when all have them ("KL×N"), else on each seed's own set ("KL own"). Both have the
// sampled estimator's expectation; the sampled change is still shown beside it.
//
// Shapes: none (per-variant scalars over run lengths and seeds).
using System.Text;
using WhaleTech.Runtime;

namespace WhaleTech.Lab.Mla;

/// <summary>A variant's excess loss (nats) at one run length: mean and 95 % half-width over its seeds; <see cref="Kl"/>
/// the same by the exact KL when every run recorded it.</summary>
public sealed record LengthPoint(int Steps, int Seeds, double MeanExcessLoss, double Ci95)
{
    public KlEstimate? Kl { get; init; }
}

/// <summary>A mean (or paired mean change) of the exact KL and its 95 % half-width over seeds: averaged over Sets
/// shared eval sets, or (Sets = 0) on each seed's own eval set.</summary>
public sealed record KlEstimate(double Mean, double Ci95, int Sets)
{
    public string Label => LabelFor(Sets);
    /// <summary>"KL×N" for N shared eval sets, "KL own" for 0 (each seed's own set).</summary>
    public static string LabelFor(int sets) => sets > 0 ? $"KL×{sets}" : "KL own";
}

/// <summary>The paired change from <see cref="FromSteps"/> to <see cref="ToSteps"/>: mean Δ (to − from) and its 95 %
/// half-width over <see cref="Pairs"/> seeds, and the gain per doubling of the steps, −Δ / log₂(to / from).</summary>
public sealed record LengthChange(int FromSteps, int ToSteps, int Pairs, double MeanChange, double Ci95)
{
    public double Doublings => Math.Log2((double)ToSteps / FromSteps);
    public double GainPerDoubling => -MeanChange / Doublings;
    public double GainCi95PerDoubling => Ci95 / Doublings;
    /// <summary>The same paired change by the exact KL, when every run of both lengths recorded it (file header).</summary>
    public KlEstimate? Kl { get; init; }
    /// <summary>The gain per doubling the test uses: by the exact KL when there is one, else by the sampled excess loss.</summary>
    public double TestedGainPerDoubling => Kl is { } k ? -k.Mean / Doublings : GainPerDoubling;
    public double TestedGainCi95PerDoubling => Kl is { } k ? k.Ci95 / Doublings : GainCi95PerDoubling;
}

/// <summary>One variant across run lengths; <see cref="RemainingGain"/> is the geometric-tail estimate (null unless the
/// last two gains per doubling are positive and shrinking).</summary>
public sealed record VariantConvergence(string Variant, IReadOnlyList<LengthPoint> Lengths, IReadOnlyList<LengthChange> Changes,
    bool Converged, double? RemainingGain);

public sealed record FrontierConvergence(double Tolerance, IReadOnlyList<int> Steps, IReadOnlyList<VariantConvergence> Variants)
{
    /// <summary>The default tolerance: a doubling of training that gains under 0.001 nats/token (≈ 0.05 % of the
    /// language's Bayes loss, and about the size of the smallest gaps the frontier resolves) counts as converged.</summary>
    public const double DefaultTolerance = 0.001;

    /// <summary>Compares frontiers of one task run for different lengths (<paramref name="byLength"/>, each already merged
    /// over its processes). Fewer than two lengths is an error: one length says nothing about convergence.</summary>
    public static FrontierConvergence Analyze(IReadOnlyList<MlaFrontierResult> byLength, double tolerance = DefaultTolerance)
    {
        Guard.Positive("converged gain", tolerance);
        var ordered = byLength.OrderBy(r => r.Options.Loop.Steps).ToList();
        var steps = ordered.Select(r => r.Options.Loop.Steps).ToList();
        if (steps.Distinct().Count() != steps.Count || steps.Count < 2)
            throw new WhaleArgumentException("--from", string.Join(" ", steps), "must hold frontiers of at least two different run lengths to test convergence");
        var variants = ordered.SelectMany(r => r.Runs.Select(x => x.Variant)).Distinct().ToList();
        var result = new List<VariantConvergence>();
        foreach (var v in variants)
        {
            var bySteps = ordered.Select(r => (Steps: r.Options.Loop.Steps, Runs: r.Runs.Where(x => x.Variant == v).ToList()))
                .Where(x => x.Runs.Count > 0).ToList();
            static Dictionary<int, double> BySeed(List<FrontierRun> runs, Func<FrontierRun, double> value) => runs.ToDictionary(x => x.Seed, value);
            var lengths = bySteps.Select(x =>
            {
                var (mean, ci) = SeedStatistics.MeanCi95(x.Runs.Select(r => r.EvalLoss).ToArray());
                KlEstimate? kl = null;
                if (MlaFrontier.KlSets(x.Runs) is int sets)
                {
                    var (m, c) = SeedStatistics.MeanCi95(x.Runs.Select(r => MlaFrontier.ExactKl(r, sets)).ToArray());
                    kl = new KlEstimate(m, c, sets);
                }
                return new LengthPoint(x.Steps, x.Runs.Count, mean, ci) { Kl = kl };
            }).ToList();
            var changes = new List<LengthChange>();
            for (int k = 0; k + 1 < bySteps.Count; k++)
            {
                var (a, b) = (bySteps[k], bySteps[k + 1]);
                if (SeedStatistics.Paired(BySeed(a.Runs, r => r.EvalLoss), BySeed(b.Runs, r => r.EvalLoss)) is not { } d) continue;
                KlEstimate? kl = null;
                if (MlaFrontier.KlSets(a.Runs.Concat(b.Runs)) is int sets
                    && SeedStatistics.Paired(BySeed(a.Runs, r => MlaFrontier.ExactKl(r, sets)), BySeed(b.Runs, r => MlaFrontier.ExactKl(r, sets))) is { } dk)
                    kl = new KlEstimate(dk.Mean, dk.Ci95, sets);
                changes.Add(new LengthChange(a.Steps, b.Steps, d.Pairs, d.Mean, d.Ci95) { Kl = kl });
            }
            bool converged = changes.Count > 0 && changes[^1].Pairs >= 2 && changes[^1].TestedGainPerDoubling + changes[^1].TestedGainCi95PerDoubling < tolerance;
            double? remaining = null;
            if (changes.Count >= 2 && changes[^1].TestedGainPerDoubling > 0 && changes[^1].TestedGainPerDoubling < changes[^2].TestedGainPerDoubling)
            {
                double r = changes[^1].TestedGainPerDoubling / changes[^2].TestedGainPerDoubling;
                remaining = changes[^1].TestedGainPerDoubling * r / (1 - r);
            }
            result.Add(new VariantConvergence(v, lengths, changes, converged, remaining));
        }
        return new FrontierConvergence(tolerance, steps, result);
    }

    /// <summary>The verdict's convergence sentence.</summary>
    public string Sentence()
    {
        var yes = Variants.Where(v => v.Converged).Select(v => v.Variant).ToList();
        var no = Variants.Where(v => !v.Converged).ToList();
        var sb = new StringBuilder($"Across run lengths ({string.Join(", ", Steps.Select(s => s.ToString("N0")))} steps), ");
        sb.Append($"converged (the last step change gains < {Tolerance:G3} nats per doubling at 95 % confidence): {(yes.Count == 0 ? "none" : string.Join(", ", yes))}");
        if (no.Count > 0)
            sb.Append("; not yet: " + string.Join(", ", no.Select(v => v.Changes.Count == 0 ? $"{v.Variant} (one length only)"
                : $"{v.Variant} ({Gain(v.Changes[^1])} per doubling, {v.Changes[^1].FromSteps:N0} → {v.Changes[^1].ToSteps:N0}{(v.Changes[^1].ToSteps == Steps[^1] ? "" : $"; not run for {Steps[^1]:N0}")})")));
        return sb.Append('.').ToString();
    }

    /// <summary>Seeds the last step change's test would need if its mean gain and its spread over seeds held. Null when
    /// there is no paired change of ≥ 2 seeds, when the mean gain is not below the tolerance (then no number of seeds
    /// passes: a longer run is the fix), or when over 10,000 seeds would be needed.</summary>
    public int? SeedsToPass(VariantConvergence v)
    {
        if (v.Changes.Count == 0 || v.Changes[^1].Pairs < 2) return null;
        var c = v.Changes[^1];
        return SeedStatistics.SeedsToBound(c.TestedGainPerDoubling, SeedStatistics.SdFromCi95(c.TestedGainCi95PerDoubling, c.Pairs), Tolerance);
    }

    string SeedsToPassCell(VariantConvergence v) =>
        v.Converged || v.Changes.Count == 0 || v.Changes[^1].Pairs < 2 ? "—"
        : v.Changes[^1].TestedGainPerDoubling >= Tolerance ? "longer run"
        : SeedsToPass(v) is int n ? n.ToString("N0") : "> 10,000";

    /// <summary>The tested gain per doubling, labelled with its estimator when it is the exact KL.</summary>
    static string Gain(LengthChange c) => c.Kl is null ? SeedStatistics.MeanCiCell(c.GainPerDoubling, c.GainCi95PerDoubling, c.Pairs)
        : $"{c.Kl.Label} {SeedStatistics.MeanCiCell(c.TestedGainPerDoubling, c.TestedGainCi95PerDoubling, c.Pairs)}";

    /// <summary>A table cell: the tested gain and, when that is the KL, the sampled one beside it.</summary>
    static string GainCell(LengthChange c) => c.Kl is null ? Gain(c) : $"{Gain(c)} (sampled {SeedStatistics.MeanCiCell(c.GainPerDoubling, c.GainCi95PerDoubling, c.Pairs)})";

    /// <summary>The Markdown section: excess loss per length, gain per doubling per step change, and the test.</summary>
    public string Markdown()
    {
        var sb = new StringBuilder();
        sb.AppendLine("## Convergence across run lengths").AppendLine();
        sb.AppendLine("Each run anneals its learning rate over its whole length, so a run's own curve falls to its last step; convergence is");
        sb.AppendLine("tested across lengths instead. Seed s trains on the same data and is evaluated on the same set at every length, so each");
        sb.AppendLine("step change is paired by seed and given per doubling of the steps (gain = −Δ / log₂ ratio; mean ± 95 % Student-t).");
        sb.AppendLine($"Converged: the last gain's upper 95 % bound is below {Tolerance:G3} nats per doubling. Remaining: the geometric tail");
        sb.AppendLine("g·r/(1 − r) of the last two gains (r = their ratio), shown when they shrink. Seeds to pass: how many seeds the test");
        sb.AppendLine("would need if the last gain's mean and spread held (\"longer run\": the mean gain is not below the tolerance).");
        sb.AppendLine("A step change is tested on the exact KL when every run of both lengths recorded it: KL×N averages N eval sets shared by");
        sb.AppendLine("all seeds, KL own is each seed's own set (the sampled change is shown beside it); otherwise on the sampled excess loss.").AppendLine();
        sb.AppendLine($"| variant | {string.Join(" | ", Steps.Select(s => $"{s:N0} steps"))} | {string.Join(" | ", Steps.Zip(Steps.Skip(1), (a, b) => $"gain/doubling {Short(a)} → {Short(b)}"))} | converged | remaining (geometric) | seeds to pass |");
        sb.AppendLine($"|---|{string.Concat(Enumerable.Repeat("---|", 2 * Steps.Count - 1))}---|---|---|");
        foreach (var v in Variants)
        {
            var cells = Steps.Select(s => v.Lengths.FirstOrDefault(l => l.Steps == s) is { } l
                ? (l.Seeds < 2 ? $"{l.MeanExcessLoss:F4} (1){(l.Kl is { } k1 ? $"; {k1.Label} {k1.Mean:F4}" : "")}"
                               : $"{l.MeanExcessLoss:F4} ± {l.Ci95:F4} ({l.Seeds}){(l.Kl is { } k ? $"; {k.Label} {k.Mean:F4} ± {k.Ci95:F4}" : "")}") : "—");
            var gains = Steps.Zip(Steps.Skip(1), (a, b) => v.Changes.FirstOrDefault(c => c.FromSteps == a && c.ToSteps == b) is { } c ? GainCell(c) : "—");
            sb.AppendLine($"| {v.Variant} | {string.Join(" | ", cells)} | {string.Join(" | ", gains)} | {(v.Converged ? "yes" : "no")} | {(v.RemainingGain is double g ? g.ToString("F4") : "—")} | {SeedsToPassCell(v)} |");
        }
        sb.AppendLine().AppendLine("(Excess loss in nats/token, mean ± 95 % CI, seeds in brackets (one seed: no interval); after it the exact KL where every run recorded it.)").AppendLine();
        sb.AppendLine("![excess loss vs run length](mla-frontier-convergence.png)");
        return sb.ToString();
    }

    static string Short(int steps) => steps % 1000 == 0 ? $"{steps / 1000}k" : steps.ToString("N0");

    /// <summary>Mean excess loss (± 95 % CI) against run length, log-log, one line per variant.</summary>
    public byte[] Plot(int width = 800, int height = 500)
    {
        var plt = new ScottPlot.Plot();
        int i = 0;
        foreach (var v in Variants)
        {
            double nudge = 0.025 * (i - (Variants.Count - 1) / 2.0);          // spread the variants' bars sideways a little
            var xs = v.Lengths.Select(l => Math.Log2(l.Steps) + nudge).ToArray();
            var ys = v.Lengths.Select(l => Math.Log10(Math.Max(l.MeanExcessLoss, 1e-6))).ToArray();
            var line = plt.Add.Scatter(xs, ys);
            line.Color = FrontierPlots.VariantColor(i++);              // the same colour as in the frontier plots
            line.LegendText = $"{v.Variant}{(v.Converged ? " (converged)" : "")}";
            line.MarkerSize = 7;
            // ± CI as a vertical segment in log space, from log10(mean − ci) (clipped above 0) to log10(mean + ci)
            foreach (var (l, x) in v.Lengths.Zip(xs))
            {
                var bar = plt.Add.Line(x, Math.Log10(Math.Max(l.MeanExcessLoss - l.Ci95, 1e-6)), x, Math.Log10(Math.Max(l.MeanExcessLoss + l.Ci95, 1e-6)));
                bar.Color = line.Color;
            }
        }
        plt.Title("Excess loss vs run length (mean ± 95% CI over seeds)");
        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(Steps.Select(s => Math.Log2(s)).ToArray(), Steps.Select(Short).ToArray());
        plt.XLabel("training steps (log scale)");
        plt.YLabel("log10 eval excess loss (nats)");
        plt.ShowLegend(ScottPlot.Edge.Right);
        return plt.GetImageBytes(width, height, ScottPlot.ImageFormat.Png);
    }
}
