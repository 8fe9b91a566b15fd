// How much of the MLA frontier's seed-to-seed spread is the eval set's, and how much the training's.
//
// The frontier scores seed s's models on seed s's own eval set (512 sequences), so each seed's number carries two
// independent errors: the training noise of the model (initialization, data order) and the sampling noise of its eval
// set. Their variances add, and both enter every interval the frontier reports: the level, the paired gap to the
// reference and the gain per doubling across run lengths (FrontierConvergence.cs). With EvalSets = N > 0 every final
// model is also scored on N further eval sets j = 0 … N−1, drawn from Random(SetSeed + j) and shared by all seeds,
// variants and lengths, with both estimators of the excess loss (FrontierTasks.cs header): the sampled one the frontier
// reports and the exact KL. Then, for each quantity Q (a level, a paired gap, a gain per doubling), per seed s:
//     eval-set sd      σ_eval² = mean_s var_j Q_sj          (the eval set's share: the seed and the models fixed)
//     training sd      σ_train² = var_s mean_j KL-Q_sj       (the model's share: eval noise averaged over N sets of
//                                                            the low-noise estimator, residual σ_eval,KL² / N)
//     observed sd      var_s Q_s(own set)                    (what the frontier's interval is made of)
// and, when the decomposition holds, observed² ≈ σ_train² + σ_eval,sampled². The share σ_eval,sampled² / observed² says
// how much of an interval more seeds would not need if the eval used the exact KL or a larger eval set.
//
// Shapes: none (per-run scalars over eval sets and seeds).
using System.Text;
using MathNet.Numerics.Statistics;
using WhaleTech.Model;
using static TorchSharp.torch;

namespace WhaleTech.Lab.Mla;

/// <summary>One quantity (a level, a paired gap to the reference, or a gain per doubling of the steps) of one variant:
/// its mean exact KL over seeds and sets and the three standard deviations of the file header. Steps is the run length
/// (the longer one for a gain, with FromSteps the shorter; 0 otherwise). NaN where fewer than 2 seeds or sets.</summary>
public sealed record EvalNoiseRow(string Quantity, string Variant, int FromSteps, int Steps, int Seeds, int Sets,
    double MeanKl, double SampledEvalSd, double KlEvalSd, double TrainingSd, double ObservedSd)
{
    /// <summary>The eval set's share of the observed seed variance (sampled estimator).</summary>
    public double EvalShare => SampledEvalSd * SampledEvalSd / (ObservedSd * ObservedSd);
}

public sealed record FrontierEvalNoise(IReadOnlyList<EvalNoiseRow> Rows)
{
    /// <summary>Eval set j is drawn from Random(SetSeed + j), whatever the seed: far from the eval seeds 10,000 + s.</summary>
    public const int SetSeed = 50_000;

    /// <summary>Scores <paramref name="model"/> on the EvalSets shared eval sets of <paramref name="o"/>.</summary>
    public static IReadOnlyList<EvalScore> Score(DeepSeekLM model, MlaFrontierOptions o, Device device)
    {
        var data = o.Data;
        return Enumerable.Range(0, o.EvalSets).Select(j => MlaFrontier.Score(model, data, o.EvalSequences, new Random(SetSeed + j), device)).ToList();
    }

    /// <summary>The rows of the file header from one merged result per run length (shortest first); null when no run
    /// was scored on shared eval sets.</summary>
    public static FrontierEvalNoise? Analyze(IReadOnlyList<MlaFrontierResult> byLength)
    {
        var rows = new List<EvalNoiseRow>();
        MlaFrontierResult? previous = null;
        foreach (var r in byLength)
        {
            var scored = r.Runs.Where(x => x.EvalSets is { Count: > 0 }).ToList();
            if (scored.Count == 0) { previous = null; continue; }
            int steps = r.Options.Loop.Steps;
            var reference = r.Points.FirstOrDefault(p => p.PairedReference != "")?.PairedReference;
            var variants = r.Points.Select(p => p.Variant).Where(v => scored.Any(x => x.Variant == v)).ToList();
            FrontierRun? Find(MlaFrontierResult from, string v, int seed) => from.Runs.FirstOrDefault(x => x.Variant == v && x.Seed == seed && x.EvalSets is { Count: > 0 });
            foreach (var v in variants)
                rows.Add(Row("excess loss", v, 0, steps, scored.Where(x => x.Variant == v).Select(x => (x.EvalSets!, (IReadOnlyList<EvalScore>?)null, x.EvalLoss, 0.0, 1.0)).ToList()));
            if (reference is not null)
                foreach (var v in variants.Where(v => v != reference))
                    rows.Add(Row($"paired Δ vs {reference}", v, 0, steps, scored.Where(x => x.Variant == v)
                        .Select(x => (x, Find(r, reference, x.Seed))).Where(p => p.Item2 is not null)
                        .Select(p => (p.x.EvalSets!, (IReadOnlyList<EvalScore>?)p.Item2!.EvalSets, p.x.EvalLoss, p.Item2!.EvalLoss, 1.0)).ToList()));
            if (previous is not null)
            {
                int from = previous.Options.Loop.Steps;
                double doublings = Math.Log2((double)steps / from);
                foreach (var v in variants)                                   // gain per doubling = (shorter − longer) / doublings
                    rows.Add(Row("gain per doubling", v, from, steps, scored.Where(x => x.Variant == v)
                        .Select(x => (Find(previous, v, x.Seed), x)).Where(p => p.Item1 is not null)
                        .Select(p => (p.Item1!.EvalSets!, (IReadOnlyList<EvalScore>?)p.x.EvalSets, p.Item1!.EvalLoss, p.x.EvalLoss, 1 / doublings)).ToList()));
            }
            previous = r;
        }
        rows.RemoveAll(x => x.Seeds == 0);
        return rows.Count == 0 ? null : new FrontierEvalNoise(rows);
    }

    /// <summary>Per seed: Q_sj = scale · (a_sj − b_sj) on shared set j and the observed Q_s = scale · (a_s − b_s) on the
    /// seed's own set (a level has no b: b = 0).</summary>
    static EvalNoiseRow Row(string quantity, string variant, int fromSteps, int steps,
        List<(IReadOnlyList<EvalScore> A, IReadOnlyList<EvalScore>? B, double ObservedA, double ObservedB, double Scale)> perSeed)
    {
        var sampled = new List<double[]>(); var kl = new List<double[]>(); var observed = new List<double>();
        foreach (var (a, b, oa, ob, scale) in perSeed)
        {
            int n = Math.Min(a.Count, b?.Count ?? a.Count);
            sampled.Add(Enumerable.Range(0, n).Select(j => scale * (a[j].Loss - (b?[j].Loss ?? 0))).ToArray());
            kl.Add(Enumerable.Range(0, n).Select(j => scale * (a[j].Kl - (b?[j].Kl ?? 0))).ToArray());
            observed.Add(scale * (oa - ob));
        }
        static double PooledSd(List<double[]> perSeed) => perSeed.Count == 0 || perSeed[0].Length < 2
            ? double.NaN : Math.Sqrt(perSeed.Average(x => x.Variance()));
        static double SeedSd(IEnumerable<double> values) { var v = values.ToArray(); return v.Length < 2 ? double.NaN : v.StandardDeviation(); }
        return new EvalNoiseRow(quantity, variant, fromSteps, steps, perSeed.Count, kl.Count == 0 ? 0 : kl.Min(x => x.Length),
            kl.Count == 0 ? double.NaN : kl.Average(x => x.Average()), PooledSd(sampled), PooledSd(kl),
            SeedSd(kl.Select(x => x.Average())), SeedSd(observed));
    }

    public string Markdown()
    {
        static string F(double x) => double.IsNaN(x) ? "—" : x.ToString("F5");
        var sb = new StringBuilder();
        sb.AppendLine("## Eval noise: the eval set's share of the seed spread").AppendLine();
        sb.AppendLine("Every final model was also scored on shared eval sets (the same sequences for every seed, variant and length) with " +
            "both estimators: the sampled excess loss the frontier reports and the exact KL, which integrates the scored token out " +
            "(FrontierTasks.cs). Eval-set sd: the spread over those sets with the model fixed. Training sd: the spread over seeds of " +
            "the exact KL averaged over all sets. Observed sd: the spread over seeds as the frontier measures it (sampled, each " +
            "seed on its own eval set). Eval share = (eval-set sd, sampled)² ÷ (observed sd)²: the part of the frontier's " +
            "intervals that the eval set, not the training, causes (sampling noise makes it only an estimate; it can exceed 100 %).").AppendLine();
        sb.AppendLine("| quantity | steps | variant | seeds × sets | mean, exact KL | eval-set sd, sampled | eval-set sd, exact KL | training sd | observed sd | eval share |");
        sb.AppendLine("|---|---|---|---|---:|---:|---:|---:|---:|---:|");
        foreach (var x in Rows)
            sb.AppendLine($"| {x.Quantity} | {(x.FromSteps == 0 ? $"{x.Steps:N0}" : $"{x.FromSteps:N0} → {x.Steps:N0}")} | {x.Variant} | {x.Seeds} × {x.Sets} | {F(x.MeanKl)} | {F(x.SampledEvalSd)} | {F(x.KlEvalSd)} | {F(x.TrainingSd)} | {F(x.ObservedSd)} | {(double.IsNaN(x.EvalShare) ? "—" : x.EvalShare.ToString("P0"))} |");
        var ratio = Rows.Where(x => x.KlEvalSd > 0 && !double.IsNaN(x.SampledEvalSd)).Select(x => x.SampledEvalSd / x.KlEvalSd).ToArray();
        if (ratio.Length > 0)
            sb.AppendLine().AppendLine($"The exact KL's eval-set sd is {ratio.Median():F1}× smaller than the sampled estimator's (median over the rows; range {ratio.Min():F1}–{ratio.Max():F1}×).");
        return sb.ToString();
    }
}
