// Whether the frontier's verdict has settled across run lengths: does a variant's paired gap to the reference still
// move when training doubles?
//
// The convergence test (FrontierConvergence.cs) asks whether each variant's own loss still falls. A verdict about
// variants needs less: that the gaps between them have stopped changing. Both variants may still gain a little per
// doubling, but if they gain the same, their ranking and the size of the gap are what more training would also show.
// Seed s draws the same initialization, data and eval set for every variant and every run length, so per seed
//     gap_s(S)   = L_variant,s(S) − L_reference,s(S)
//     drift_s    = (gap_s(S_{k+1}) − gap_s(S_k)) / log₂(S_{k+1} / S_k)        per doubling of the steps
// (the difference of the two variants' gains per doubling), with mean and 95 % Student-t half-width over the seeds that
// have all four runs. Positive drift: the variant falls further behind with training; negative: it catches up. The gap
// counts as settled when |mean drift| + half-width < the tolerance, an equivalence test (the default tolerance is the
// convergence test's 0.001 nats per doubling). Like the convergence test, it uses the exact KL when all four runs
// recorded it (averaged over the shared eval sets: KL×N), else the sampled excess loss.
//
// Shapes: none (per-variant scalars over run lengths and seeds).
using System.Text;

namespace WhaleTech.Lab.Mla;

/// <summary>One variant's paired gap to the reference at two run lengths over the same <see cref="Pairs"/> seeds, and
/// its change per doubling of the steps (mean and 95 % half-width). Estimator: "KL×N", "KL own" or "sampled".</summary>
public sealed record GapDriftRow(string Variant, int FromSteps, int ToSteps, int Pairs, string Estimator,
    double GapFrom, double GapFromCi95, double GapTo, double GapToCi95, double DriftPerDoubling, double DriftCi95PerDoubling)
{
    /// <summary>The equivalence test: the drift's 95 % interval lies within ± the tolerance.</summary>
    public bool SettledWithin(double tolerance) => Math.Abs(DriftPerDoubling) + DriftCi95PerDoubling < tolerance;
}

public sealed record FrontierGapDrift(string Reference, double Tolerance, IReadOnlyList<GapDriftRow> Rows)
{
    /// <summary>Every variant's gap to the reference (the largest cache) between consecutive run lengths at which both
    /// were run with ≥ 2 common seeds; null when there is no such pair of lengths.</summary>
    public static FrontierGapDrift? Analyze(IReadOnlyList<MlaFrontierResult> byLength, double tolerance = FrontierConvergence.DefaultTolerance)
    {
        var all = byLength.SelectMany(r => r.Runs).ToList();
        if (all.Count == 0) return null;
        string reference = all.MaxBy(r => r.KvBytesPerTokenBf16)!.Variant;
        var ordered = byLength.OrderBy(r => r.Options.Loop.Steps).ToList();
        var rows = new List<GapDriftRow>();
        foreach (var variant in all.Select(r => r.Variant).Distinct().Where(v => v != reference))
        {
            var lengths = ordered.Where(r => r.Runs.Any(x => x.Variant == variant) && r.Runs.Any(x => x.Variant == reference)).ToList();
            for (int k = 0; k + 1 < lengths.Count; k++)
                if (Row(variant, reference, lengths[k], lengths[k + 1]) is { } row) rows.Add(row);
        }
        return rows.Count == 0 ? null : new FrontierGapDrift(reference, tolerance, rows);
    }

    static GapDriftRow? Row(string variant, string reference, MlaFrontierResult a, MlaFrontierResult b)
    {
        Dictionary<int, FrontierRun> Of(MlaFrontierResult r, string v) => r.Runs.Where(x => x.Variant == v).ToDictionary(x => x.Seed);
        var (va, ra, vb, rb) = (Of(a, variant), Of(a, reference), Of(b, variant), Of(b, reference));
        var seeds = va.Keys.Where(s => ra.ContainsKey(s) && vb.ContainsKey(s) && rb.ContainsKey(s)).Order().ToList();
        if (seeds.Count < 2) return null;
        var runs = seeds.SelectMany(s => new[] { va[s], ra[s], vb[s], rb[s] }).ToList();
        int? sets = MlaFrontier.KlSets(runs);
        double Loss(FrontierRun r) => sets is int n ? MlaFrontier.ExactKl(r, n) : r.EvalLoss;
        var gapA = seeds.Select(s => Loss(va[s]) - Loss(ra[s])).ToArray();
        var gapB = seeds.Select(s => Loss(vb[s]) - Loss(rb[s])).ToArray();
        double doublings = Math.Log2((double)b.Options.Loop.Steps / a.Options.Loop.Steps);
        var drift = gapA.Zip(gapB, (x, y) => (y - x) / doublings).ToArray();
        var (ma, ca) = SeedStatistics.MeanCi95(gapA);
        var (mb, cb) = SeedStatistics.MeanCi95(gapB);
        var (md, cd) = SeedStatistics.MeanCi95(drift);
        string estimator = sets is int m ? KlEstimate.LabelFor(m) : "sampled";
        return new GapDriftRow(variant, a.Options.Loop.Steps, b.Options.Loop.Steps, seeds.Count, estimator, ma, ca, mb, cb, md, cd);
    }

    /// <summary>Each variant's last change between run lengths.</summary>
    public IReadOnlyList<GapDriftRow> Last => Rows.GroupBy(r => r.Variant).Select(g => g.MaxBy(r => r.ToSteps)!).ToList();

    /// <summary>The verdict's sentence: whose gap to the reference has settled over its last doubling.</summary>
    public string Sentence()
    {
        string Cell(GapDriftRow r) => $"{r.Variant} ({r.Estimator}, {r.FromSteps:N0} → {r.ToSteps:N0}: gap {SeedStatistics.Number(r.GapFrom, signed: true)} → {SeedStatistics.Number(r.GapTo, signed: true)}, " +
            $"{SeedStatistics.MeanCiCell(r.DriftPerDoubling, r.DriftCi95PerDoubling, r.Pairs, signed: true)} per doubling)";
        var settled = Last.Where(r => r.SettledWithin(Tolerance)).ToList();
        var moving = Last.Except(settled).ToList();
        var sb = new StringBuilder($"Gaps to {Reference} across run lengths, settled (the last change moves the gap by < {Tolerance:G3} nats per doubling at 95 % confidence): ");
        sb.Append(settled.Count == 0 ? "none" : string.Join(", ", settled.Select(Cell)));
        if (moving.Count > 0) sb.Append("; not settled: " + string.Join(", ", moving.Select(Cell)));
        return sb.Append('.').ToString();
    }

    /// <summary>The Markdown section: every variant's gap per pair of consecutive run lengths and its drift.</summary>
    public string Markdown()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"## The gap to {Reference} across run lengths").AppendLine();
        sb.AppendLine($"Seed s trains on the same data and is scored on the same eval sets for every variant and length, so the change of a");
        sb.AppendLine($"variant's gap to {Reference} between two lengths is paired by seed, over the seeds that have all four runs, and given per");
        sb.AppendLine("doubling of the steps (drift; positive: the variant falls further behind with training). Settled: the drift's 95 %");
        sb.AppendLine($"interval lies within ± {Tolerance:G3} nats per doubling. By the exact KL where all four runs have it, else sampled.").AppendLine();
        sb.AppendLine("| variant | steps | seeds | estimator | gap before | gap after | drift per doubling | settled |");
        sb.AppendLine("|---|---|---:|---|---|---|---|---|");
        foreach (var r in Rows.OrderBy(r => r.Variant).ThenBy(r => r.FromSteps))
            sb.AppendLine($"| {r.Variant} | {r.FromSteps:N0} → {r.ToSteps:N0} | {r.Pairs} | {r.Estimator} | {SeedStatistics.MeanCiCell(r.GapFrom, r.GapFromCi95, r.Pairs, signed: true)} | " +
                $"{SeedStatistics.MeanCiCell(r.GapTo, r.GapToCi95, r.Pairs, signed: true)} | {SeedStatistics.MeanCiCell(r.DriftPerDoubling, r.DriftCi95PerDoubling, r.Pairs, signed: true)} | {(r.SettledWithin(Tolerance) ? "yes" : "no")} |");
        return sb.ToString();
    }
}
