using WhaleTech.Lab.Mla;
using WhaleTech.Model;

namespace WhaleTech.Tests.Attention;

public class MlaFrontierTests
{
    [Fact]
    public void VariantsHaveMatchedParametersAndTheirCacheSizes()
    {
        var o = new MlaFrontierOptions();
        long mha = 0;
        foreach (var name in new[] { "mha", "gqa2", "mqa", "mla-8-4", "mla-12-4", "mla-8-8", "mla-24-8" })
        {
            var cfg = MlaFrontier.Config(o, FrontierVariant.Parse(name));
            using var m = new DeepSeekLM(cfg);
            if (name == "mha") mha = m.ParameterCount();
            Assert.InRange(m.ParameterCount(), mha * 0.97, mha * 1.03);                 // MLP resized to the MHA total
            long perLayer = name switch { "mha" => 2 * 4 * 8, "gqa2" => 2 * 2 * 8, "mqa" => 2 * 8, "mla-8-4" => 12, "mla-12-4" => 16, "mla-8-8" => 16, _ => 32 };
            Assert.Equal(perLayer * o.Model.Layers, MlaFrontier.KvElements(cfg));
        }
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => FrontierVariant.Parse("mla-8"));
    }

    [Fact]
    public void ConvergenceNeedsAFlatTail()
    {
        var rising = Enumerable.Range(0, 11).Select(i => new CurvePoint(i * 100, 2.0 - 0.15 * i, 0.1 + 0.08 * i)).ToList();
        var flat = Enumerable.Range(0, 11).Select(i => new CurvePoint(i * 100, i < 6 ? 2.0 - 0.3 * i : 0.31 + 0.001 * (i % 2), i < 6 ? 0.1 * i : 0.8)).ToList();
        Assert.False(MlaFrontier.FlatTail(rising, 0.02));
        Assert.True(MlaFrontier.FlatTail(flat, 0.02));
    }

    [Fact]
    public void LearningSpeedIsTheFirstStepUnderTheThresholdOverTheRunsThatGotThere()
    {
        FrontierRun Run(int seed, params double[] losses) => new("mqa", seed, 1, 16, 32, losses[^1], 1, true,
            losses.Select((l, i) => new CurvePoint(i * 100, l, 1)).ToList());
        var p = MlaFrontier.Summarize([Run(0, 1.0, 0.04, 0.01), Run(1, 1.0, 0.5, 0.05), Run(2, 1.0, 0.9, 0.6)], 0.05).Single();
        Assert.Equal(2, p.ReachedRuns);                                 // seed 2 never got to 0.05
        Assert.Equal(150, p.MeanStepsToThreshold, 9);                   // steps 100 and 200
        Assert.Equal(12.706204736174707 * Math.Sqrt(5000) / Math.Sqrt(2), p.StepsToThresholdCi95, 6);   // t(0.975, 1)·s/√2
        Assert.Null(MlaFrontier.StepsTo([new CurvePoint(0, 1, 0)], 0.05));
    }

    /// <summary>A finished run of <paramref name="v"/> whose curve is its one final eval point.</summary>
    static FrontierRun Run(string v, double bytes, int seed, double loss) => new(v, seed, 1, (long)bytes / 2, bytes, loss, 1, true, [new CurvePoint(0, loss, 1)]);

    /// <summary>Seeds share data and eval sets across variants, so a constant per-seed gap is significant even when the
    /// seeds' spread makes the unpaired intervals overlap.</summary>
    [Fact]
    public void PairedDifferencesAgainstTheLargestCacheRemoveTheSeedSpread()
    {
        var runs = new[] { 0.1, 0.5, 0.9 }.SelectMany((l, s) => new[] { Run("mha", 256, s, l), Run("mqa", 64, s, l + 0.1 + 0.01 * s) }).ToList();
        var points = MlaFrontier.Summarize(runs);
        var mqa = points.Single(p => p.Variant == "mqa");
        Assert.Equal("mha", mqa.PairedReference);
        Assert.Equal(0.11, mqa.PairedDifference, 12);
        Assert.Equal(4.302652729911275 * 0.01 / Math.Sqrt(3), mqa.PairedDifferenceCi95, 9);
        Assert.Equal("", points.Single(p => p.Variant == "mha").PairedReference);
        var verdict = MlaFrontier.Verdict(points);
        Assert.Contains("No variant is distinguishably worse", verdict);          // unpaired: the seed spread hides it
        Assert.Contains("worse: mqa (+0.1100", verdict);                          // paired: it is there
    }

    /// <summary>The verdict names how many seeds its intervals rest on: a range when the points differ, and no interval
    /// at all for one seed (a single process of a split experiment), rather than a "± 0" that reads as certainty.</summary>
    [Fact]
    public void VerdictNamesTheSeedCountsBehindItsIntervals()
    {
        var onePoint = MlaFrontier.Summarize([Run("mha", 256, 3, 0.1)]);
        var one = MlaFrontier.Verdict(onePoint);
        Assert.Contains("1 seed, so no interval yet", one);
        var d = new MlaFrontierOptions();                                   // and its table row gives no "± 0.0000" either
        var table = MlaFrontier.Markdown(new MlaFrontierResult(d with { Variants = ["mha"], Seeds = 1, FirstSeed = 3 }, [Run("mha", 256, 3, 0.1)], onePoint, one), "machine", "command");
        Assert.Contains("| 0.1000 (1 seed) |", table);
        Assert.DoesNotContain("± 0.0000", table);
        var mixed = MlaFrontier.Summarize(Enumerable.Range(0, 6).Select(s => Run("mha", 256, s, 0.1 + 0.01 * s))
            .Concat(Enumerable.Range(0, 3).Select(s => Run("mqa", 64, s, 0.2 + 0.01 * s))).ToList());
        Assert.Contains("Student-t intervals, 3–6 seeds)", MlaFrontier.Verdict(mixed));
    }

    [Fact]
    public void MergePoolsRunsAndRecomputesTheVerdict()
    {
        static FrontierRun Run(string v, int seed, double bytes, double loss) =>
            new(v, seed, 100, (long)(bytes / 2), bytes, loss, 1 - loss, true, [new CurvePoint(0, 3, 0), new CurvePoint(10, loss, 1 - loss)]);
        var d = new MlaFrontierOptions();
        var o = d with { Variants = ["mha"], Loop = d.Loop with { Steps = 10 } };
        var a = new MlaFrontierResult(o, [Run("mha", 0, 256, 0.10), Run("mha", 1, 256, 0.12), Run("mha", 2, 256, 0.11)], [], "");
        var b = new MlaFrontierResult(o with { Variants = ["mqa"] }, [Run("mqa", 0, 64, 0.50), Run("mqa", 1, 64, 0.52), Run("mqa", 2, 64, 0.51)], [], "");
        var m = MlaFrontier.Merge([a, b]);
        Assert.Equal(["mha", "mqa"], m.Options.Variants);
        Assert.Equal(2, m.Points.Count);
        Assert.All(m.Points, p => Assert.True(p.OnFrontier));           // smaller cache or lower loss: both Pareto-optimal
        Assert.Contains("Distinguishably worse: mqa", m.Verdict);
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => MlaFrontier.Merge([a, b with { Options = o with { Loop = o.Loop with { Steps = 20 } } }]));
    }

    /// <summary>A seed fixes initialization, data stream and eval set, so seed 1 trained alone (--first-seed 1) is the
    /// run seed 1 is after seed 0 in the same process: an experiment's seeds can be split over processes.</summary>
    [Fact]
    public void ASeedTrainsTheSameRunInAnyProcess()
    {
        var d = new MlaFrontierOptions();
        var o = d with { Variants = ["mqa"], Seeds = 2, Loop = d.Loop with { Steps = 12 }, EvalEvery = 6, EvalSequences = 16, WarmupSteps = 2 };
        var both = MlaFrontier.Run(o, TorchSharp.torch.CPU);
        var alone = MlaFrontier.Run(o with { Seeds = 1, FirstSeed = 1 }, TorchSharp.torch.CPU);
        Assert.Equal([0, 1], both.Runs.Select(r => r.Seed));
        Assert.Equal(1, alone.Runs.Single().Seed);
        Assert.Equal(both.Runs[1].Curve, alone.Runs[0].Curve);          // bit-exact, not within a tolerance
        Assert.NotEqual(both.Runs[0].Curve, both.Runs[1].Curve);
    }

    [Fact]
    public void SeedsSplitOverProcessesMergeIntoOneExperiment()
    {
        static FrontierRun Run(string v, int seed, double bytes, double loss) =>
            new(v, seed, 100, (long)(bytes / 2), bytes, loss, 1 - loss, true, [new CurvePoint(10, loss, 1 - loss)]);
        var d = new MlaFrontierOptions();
        var o = d with { Variants = ["mha", "mqa"], Seeds = 2, Loop = d.Loop with { Steps = 10 } };
        var a = new MlaFrontierResult(o, [Run("mha", 0, 256, 0.10), Run("mha", 1, 256, 0.12), Run("mqa", 0, 64, 0.20), Run("mqa", 1, 64, 0.22)], [], "");
        var b = new MlaFrontierResult(o with { Seeds = 1, FirstSeed = 2 }, [Run("mha", 2, 256, 0.11), Run("mqa", 2, 64, 0.21)], [], "");
        var m = MlaFrontier.Merge([a, b]);
        Assert.Equal((3, 0), (m.Options.Seeds, m.Options.FirstSeed));
        Assert.All(m.Points, p => Assert.Equal(3, p.Seeds));
        Assert.Equal(0.10, m.Points.Single(p => p.Variant == "mqa").PairedDifference, 12);   // paired over all three seeds
        Assert.False(m.Partial);
        // A process stopped after seed 0 of three, whose seeds 1 and 2 another process trained: complete once pooled.
        var stopped = new MlaFrontierResult(o with { Variants = ["mha"], Seeds = 3 }, [Run("mha", 0, 256, 0.10)], [], "") { Partial = true };
        var rest = new MlaFrontierResult(o with { Variants = ["mha"], Seeds = 2, FirstSeed = 1 }, [Run("mha", 1, 256, 0.12), Run("mha", 2, 256, 0.11)], [], "");
        Assert.False(MlaFrontier.Merge([stopped, rest]).Partial);
        Assert.True(MlaFrontier.Merge([stopped, rest with { Runs = rest.Runs.Take(1).ToList() }]).Partial);   // seed 2 still missing
        var e = Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => MlaFrontier.Merge([a, a]));
        Assert.Contains("mha seed 0", e.Message);
    }

    [Fact]
    public void ARunReproducedToScoreItOnSharedEvalSetsReplacesTheOriginalWhenPooled()
    {
        static FrontierRun Run(string v, int seed, double bytes, double loss, double? kl = null, int sets = 0) =>
            new(v, seed, 100, (long)(bytes / 2), bytes, loss, 1 - loss, true, [new CurvePoint(10, loss, 1 - loss) { EvalKl = kl }])
                { EvalSets = sets == 0 ? null : Enumerable.Range(0, sets).Select(j => new EvalScore(loss, 1 - loss, kl!.Value + 0.001 * j)).ToList() };
        var d = new MlaFrontierOptions();
        var o = d with { Variants = ["mha", "mqa"], Loop = d.Loop with { Steps = 10 } };
        // committed: both variants, recorded before the KL; reproduced: mha again, scored on 2 shared sets
        var committed = new MlaFrontierResult(o, [Run("mha", 0, 256, 0.10), Run("mha", 1, 256, 0.12), Run("mqa", 0, 64, 0.20), Run("mqa", 1, 64, 0.23)], [], "");
        var again = new MlaFrontierResult(o with { Variants = ["mha"], EvalSets = 2 },
            [Run("mha", 0, 256, 0.10 + 2e-7, 0.09, sets: 2), Run("mha", 1, 256, 0.12, 0.11, sets: 2)], [], "");
        var m = MlaFrontier.Merge([committed, again]);                      // EvalSets differ: they change no training bit
        Assert.Equal(4, m.Runs.Count);
        Assert.All(m.Runs.Where(r => r.Variant == "mha"), r => Assert.Equal(2, r.EvalSets!.Count));   // the richer copy is kept
        Assert.Equal(2, m.Options.EvalSets);
        var mha = m.Points.Single(p => p.Variant == "mha");
        Assert.Equal((0.1005, 2), (Math.Round(mha.MeanExactKl!.Value, 12), mha.ExactKlSharedSets));   // per variant: mha has the KL …
        var mqa = m.Points.Single(p => p.Variant == "mqa");
        Assert.Null(mqa.MeanExactKl);                                       // … mqa does not, so no KL gap either
        Assert.Null(mqa.PairedKlDifference);
        Assert.Equal(0.105, mqa.PairedDifference, 6);                       // the sampled gap pools the reproduced mha
        Assert.Matches(@"\| mqa \| — \| — \| — \| — \|", MlaFrontier.Markdown(m, "machine", "command"));

        // mqa with own-set KL only: its gap to mha is taken on the own sets both have, not on mha's shared sets
        var withKl = committed with { Runs = [.. committed.Runs.Take(2), Run("mqa", 0, 64, 0.20, 0.15), Run("mqa", 1, 64, 0.23, 0.17)] };
        var k = MlaFrontier.Merge([withKl, again]).Points.Single(p => p.Variant == "mqa");
        Assert.Equal((0.06, 0), (Math.Round(k.PairedKlDifference!.Value, 12), k.PairedKlSharedSets));   // (0.15 − 0.09 + 0.17 − 0.11) / 2
        // The verdict states the KL gap beside the sampled one; before, it named the sampled gaps only.
        Assert.Contains("By the exact KL (the same gap with less eval noise; 1 of 1 variants have it): worse: mqa (+0.0600 ± 0.0000)",
            MlaFrontier.Merge([withKl, again]).Verdict);
        Assert.DoesNotContain("By the exact KL", m.Verdict);               // mqa without the KL: no such sentence

        var other = again with { Runs = [Run("mha", 0, 256, 0.1003, 0.09, sets: 2)] };   // not the same training
        var e = Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => MlaFrontier.Merge([committed, other]));
        Assert.Contains("mha seed 0", e.Message);
        Assert.Contains("reproductions of it", e.Message);
    }

    [Fact]
    public void CommittedResultsWrittenBeforeTheSharedRecordsStillLoad()
    {
        // Written when the options held Hidden/Layers/Heads and Steps/Batch/LearningRate flat; Read moves them into Model and Loop.
        var path = Path.Combine(RepoRoot(), "benchmarks", "results", "mla-frontier-cpu", "mla-frontier.json");
        var (r, command, _) = MlaFrontier.Read(path);
        Assert.Equal(new WhaleTech.Core.ModelShape { Hidden = 32, Layers = 2, Heads = 4 }, r.Options.Model);
        Assert.Equal(new WhaleTech.Training.TrainingLoop { Steps = 1500, BatchSize = 32, LearningRate = 0.003 }, r.Options.Loop);
        Assert.Equal((2, 8, 100), (r.Options.Pairs, r.Options.Keys, r.Options.WarmupSteps));
        Assert.NotEmpty(command);
        // Written when the flat-tail flag was called "Converged" ("ConvergedRuns", "ConvergedDelta"): the flags survive the rename.
        var raw = System.Text.Json.JsonDocument.Parse(File.ReadAllText(path)).RootElement.GetProperty("result");
        Assert.Equal(raw.GetProperty("Runs").EnumerateArray().Select(x => x.GetProperty("Converged").GetBoolean()), r.Runs.Select(x => x.FlatTail));
        Assert.Equal(raw.GetProperty("Points").EnumerateArray().Select(x => x.GetProperty("ConvergedRuns").GetInt32()), r.Points.Select(x => x.FlatTailRuns));
        Assert.Contains(r.Runs, x => x.FlatTail);
        Assert.Equal(raw.GetProperty("Options").GetProperty("ConvergedDelta").GetDouble(), r.Options.FlatTailDelta);
        // A result written now reads back equal.
        var dir = Path.Combine(Path.GetTempPath(), "whaletech-frontier-" + Guid.NewGuid().ToString("N"));
        try
        {
            File.WriteAllText(Path.Combine(Directory.CreateDirectory(dir).FullName, "mla-frontier.json"), MlaFrontier.Json(new { command, machine = "m", result = r }));
            var again = MlaFrontier.Read(Path.Combine(dir, "mla-frontier.json")).Result.Options;
            Assert.Equal(r.Options.Variants, again.Variants);
            Assert.Equal(r.Options, again with { Variants = r.Options.Variants });
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void FrontierPlotsGiveEachVariantOneColourAndDrawThePairedGapOnlyWhenSeedsPair()
    {
        var path = Path.Combine(RepoRoot(), "benchmarks", "results", "mla-frontier-language-96000-seven-cpu", "mla-frontier.json");
        var (r, _, _) = MlaFrontier.Read(path);
        Assert.Equal(7, r.Points.Count);
        var order = FrontierPlots.VariantOrder(r);
        Assert.Equal(r.Points.Select(p => p.Variant).Order(), order.Order());                 // every variant once
        Assert.Equal(7, order.Select(v => FrontierPlots.ColorOf(order, v)).Distinct().Count());  // seven colours, no reuse
        Assert.Equal(r.Convergence!.Variants.Select(c => c.Variant), order);                    // the convergence plot's order
        Tests.Plots.PngAssert.Readable(FrontierPlots.Frontier(r), "frontier");
        Tests.Plots.PngAssert.Readable(FrontierPlots.Paired(r)!, "paired");
        Tests.Plots.PngAssert.Readable(FrontierPlots.Curves(r.Runs.Select(x => (x.Variant, x.Curve)), "curves", order), "curves");
        Assert.Null(FrontierPlots.Paired(r with { Points = r.Points.Select(p => p with { PairedReference = "" }).ToList() }));
    }

    [Fact]
    public void ThePairedPlotDrawsTheExactKlGapWhenEveryPointHasIt()
    {
        var sampledOnly = new FrontierPoint("mqa", 1, 64, 3, 0.3, 0.01, 0.006, 0.001, 3, true) { PairedReference = "mha", PairedDifference = 0.0006, PairedDifferenceCi95 = 0.0022 };
        var withKl = sampledOnly with { PairedKlDifference = 0.0009, PairedKlCi95 = 0.0020, PairedKlSharedSets = 16 };
        var (estimator, gap) = FrontierPlots.PairedGap([withKl, withKl with { Variant = "mla-8-8" }]);
        Assert.Equal("exact KL on 16 shared sets", estimator);
        Assert.Equal((0.0009, 0.0020), gap(withKl));
        (estimator, gap) = FrontierPlots.PairedGap([withKl, sampledOnly with { Variant = "gqa2" }]);   // one point lacks it: all sampled
        Assert.Equal("excess loss", estimator);
        Assert.Equal((0.0006, 0.0022), gap(withKl));
    }

    static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "WhaleTech.sln"))) return d.FullName;
        throw new InvalidOperationException("WhaleTech.sln not found above " + AppContext.BaseDirectory);
    }
}
