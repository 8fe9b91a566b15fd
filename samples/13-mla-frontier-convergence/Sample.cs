// Sample 13 — has the quality-vs-KV-cache frontier converged? (DeepSeek-V2 §2.1 claims MLA matches MHA at a fraction
// of the cache; a claim about *converged* quality needs runs that have stopped improving.)
// 1. Train MHA (256 B/token of KV cache here) and MLA-8-8 (64 B/token) on the topic-mixture language, whose Bayes
//    loss is exact, so every number is excess loss over Bayes (nats/token).
// 2. Do it at two run lengths, S and 2S. Each run anneals its cosine learning rate over its own length, so its own
//    curve falls to the last step whatever S is: a flat tail inside one run says little. Convergence is tested
//    across lengths instead: seed s trains on the same data and is evaluated on the same set at every length, so the
//    change from S to 2S is paired by seed, and a variant counts as converged when the upper 95 % bound of its gain
//    per doubling is below a tolerance (an equivalence test, not a failure to find a change).
// 3. The 2S runs are split over two "processes" by first seed, as a long experiment would be split over machines or
//    sessions, and pooled (MlaFrontier.Pool): a seed fixes the initialization, data and eval set wherever it trains.
// 4. Every final model is also scored on eval sets all seeds share (EvalSets, --eval-sets), by the exact KL: the same
//    excess loss with the scored token integrated out. The test uses it, because the sampled number's eval noise does
//    not cancel between two lengths' models (Lab/Mla/FrontierEvalNoise.cs); the sampled gain is printed beside it.
// 5. A verdict compares variants, so it also needs their gaps to have stopped moving: the pooled result reports how
//    each variant's paired gap to the reference changed from S to 2S, per doubling (Lab/Mla/FrontierGapDrift.cs).
// The same from the command line: whale mla frontier --task language … --first-seed k, then --from a.json b.json ….
using WhaleTech.Lab;
using WhaleTech.Lab.Mla;
using WhaleTech.Runtime;

namespace WhaleTech.Samples;

public static class S13MlaFrontierConvergence
{
    public const string Title = "Is the MLA-vs-MHA frontier converged? Two run lengths, split seeds, one pooled test";

    public static void Run(SampleContext ctx)
    {
        int steps = ctx.Quick ? 40 : 1000, seeds = ctx.Quick ? 2 : 3;
        var baseline = new MlaFrontierOptions
        {
            TaskKind = "language", Variants = ["mha", "mla-8-8"], Seeds = seeds,
            Loop = new() { Steps = steps, BatchSize = 32, LearningRate = 3e-3 },
            EvalEvery = steps / 4, EvalSequences = ctx.Quick ? 64 : 512, EvalSets = ctx.Quick ? 2 : 8,
        };

        // 1. Length S, all seeds in one process.
        ctx.Out.WriteLine($"Training {string.Join(" and ", baseline.Variants)} × {seeds} seeds for {steps} steps, then for {2 * steps} steps ({ctx.Device.type}):");
        var shortRuns = MlaFrontier.Run(baseline, ctx.Device, ctx.Out.WriteLine);

        // 2. Length 2S, seed 0 in one "process" and the other seeds in another (FirstSeed), as --first-seed does.
        var longer = baseline with { Loop = baseline.Loop with { Steps = 2 * steps }, EvalEvery = 2 * steps / 4 };
        var partA = MlaFrontier.Run(longer with { Seeds = 1, FirstSeed = 0 }, ctx.Device, ctx.Out.WriteLine);
        var partB = MlaFrontier.Run(longer with { Seeds = seeds - 1, FirstSeed = 1 }, ctx.Device, ctx.Out.WriteLine);

        // 3. Pool: each length's parts are merged, and the lengths are compared seed by seed.
        var pooled = MlaFrontier.Pool([shortRuns, partA, partB]);
        var convergence = pooled.Convergence!;
        ctx.Out.WriteLine($"\nExcess loss over Bayes (nats/token, mean ± 95 % CI over {seeds} seeds) and gain per doubling of the steps:");
        string tested = convergence.Variants[0].Changes[^1].Kl?.Label ?? "sampled";
        ctx.Out.WriteLine($"  {"variant",-9} {"KV B/token",10} {$"at {steps}",18} {$"at {2 * steps}",18} {$"gain/doubling, {tested}",22} {"sampled",18} {"converged",9}");
        foreach (var v in convergence.Variants)
        {
            var kv = pooled.Points.First(p => p.Variant == v.Variant).KvBytesPerTokenBf16;
            var c = v.Changes[^1];
            ctx.Out.WriteLine($"  {v.Variant,-9} {kv,10:F0} {Cell(v.Lengths[0]),18} {Cell(v.Lengths[1]),18} {$"{c.TestedGainPerDoubling:F4} ± {c.TestedGainCi95PerDoubling:F4}",22} {$"{c.GainPerDoubling:F4} ± {c.GainCi95PerDoubling:F4}",18} {(v.Converged ? "yes" : "no"),9}");
        }
        ctx.Out.WriteLine($"(levels: sampled excess loss; the test uses the {(tested == "sampled" ? "sampled gain" : $"exact KL over the {convergence.Variants[0].Changes[^1].Kl!.Sets} shared eval sets")}.)");
        int flat = pooled.Runs.Count(r => r.FlatTail);
        ctx.Out.WriteLine($"\nWithin-run flat-tail flag at {2 * steps} steps: {flat} of {pooled.Runs.Count} runs (it cannot see what a longer run would gain).");
        ctx.Out.WriteLine(convergence.Sentence());
        // 5. The gap to the reference at both lengths, paired by seed: a gap that no longer moves is a settled verdict,
        //    even while both variants still gain a little.
        foreach (var g in pooled.GapDrift?.Rows ?? [])
            ctx.Out.WriteLine($"Gap {g.Variant} − {pooled.GapDrift!.Reference} ({g.Estimator}): {SeedStatistics.Number(g.GapFrom, signed: true)} at {g.FromSteps} steps, {SeedStatistics.Number(g.GapTo, signed: true)} at {g.ToSteps}; " +
                $"drift {SeedStatistics.Number(g.DriftPerDoubling, signed: true)} ± {g.DriftCi95PerDoubling:F4} per doubling, settled: {(g.SettledWithin(pooled.GapDrift.Tolerance) ? "yes" : "no")}");
        ctx.Out.WriteLine("Verdict: " + pooled.Verdict);
        ctx.Out.WriteLine($"Seeds split over parts pool to one experiment of {pooled.Runs.Count} runs: {pooled.Runs.Count == baseline.Variants.Length * seeds}");
        ctx.Out.WriteLine($"Every final model scored on the {baseline.EvalSets} shared eval sets: {pooled.Runs.All(r => r.EvalSets?.Count == baseline.EvalSets)}");

        MlaFrontier.Write(pooled, ctx.OutDir, MachineInfo.Collect(ctx.Device).ToString(), "dotnet run -c Release --project samples -- 13" + (ctx.Quick ? " --quick" : ""));
        ctx.Out.WriteLine($"Wrote {ctx.OutDir}/mla-frontier.md (with the convergence section), mla-frontier.png, mla-frontier-paired.png, mla-frontier-curves.png and mla-frontier-convergence.png.");
        if (convergence.Variants.Any(v => !v.Converged))
            ctx.Out.WriteLine("Short runs are still far from converged; the committed study doubles the steps up to 192,000: benchmarks/results/mla-frontier-language-*-cpu/ and docs/mla.md.");
    }

    static string Cell(LengthPoint p) => $"{p.MeanExcessLoss:F4} ± {p.Ci95:F4}";
}
