using WhaleTech.Lab.Mla;

namespace WhaleTech.Tests.Attention;

/// <summary>Convergence across run lengths: paired per-seed step changes, per doubling, with an equivalence test.</summary>
public class FrontierConvergenceTests
{
    static readonly MlaFrontierOptions Defaults = new();

    internal static MlaFrontierResult Length(int steps, params (string Variant, int Seed, double Loss)[] runs) =>
        new(Defaults with { Variants = runs.Select(r => r.Variant).Distinct().ToArray(), Loop = Defaults.Loop with { Steps = steps } },
            runs.Select(r => new FrontierRun(r.Variant, r.Seed, 100, r.Variant == "mha" ? 128 : 32, r.Variant == "mha" ? 256 : 64, r.Loss, 0.5,
                true, [new CurvePoint(steps, r.Loss, 0.5)])).ToList(), [], "");

    internal static (string, int, double)[] Seeds(string variant, double loss, params double[] noise) =>
        noise.Select((e, s) => (variant, s, loss + 0.001 * s + e)).ToArray();

    [Fact]
    public void AVariantConvergesWhenItsLastDoublingGainsLessThanTheToleranceAtNinetyFivePercent()
    {
        var lengths = new[]
        {
            Length(1000, [.. Seeds("mha", 0.020, 0, 0, 0), .. Seeds("mqa", 0.030, 0, 0, 0)]),
            Length(2000, [.. Seeds("mha", 0.012, 0, 0, 0), .. Seeds("mqa", 0.020, 0, 0, 0)]),
            Length(4000, [.. Seeds("mha", 0.0115, 0.0001, -0.0001, 0), .. Seeds("mqa", 0.017, 0, 0, 0)]),
        };
        var c = FrontierConvergence.Analyze(lengths);
        Assert.Equal([1000, 2000, 4000], c.Steps);
        var mha = c.Variants.Single(v => v.Variant == "mha");
        var last = mha.Changes[^1];
        Assert.Equal((2000, 4000, 3), (last.FromSteps, last.ToSteps, last.Pairs));
        Assert.Equal(0.0005, last.GainPerDoubling, 12);
        Assert.Equal(4.302652729911275 * 0.0001 / Math.Sqrt(3), last.GainCi95PerDoubling, 12);   // t(0.975, 2)·s/√3, s = 1e-4
        Assert.True(mha.Converged);                                        // 0.0005 + 0.00025 < 0.001
        double r = 0.0005 / 0.008;
        Assert.Equal(0.0005 * r / (1 - r), mha.RemainingGain!.Value, 12);   // geometric tail of the shrinking gains
        var mqa = c.Variants.Single(v => v.Variant == "mqa");
        Assert.False(mqa.Converged);                                       // still gains 0.003 per doubling
        Assert.False(FrontierConvergence.Analyze(lengths, tolerance: 0.0007).Variants.Single(v => v.Variant == "mha").Converged);  // upper bound 0.00075
        var sentence = c.Sentence();
        Assert.Contains("converged (the last step change gains < 0.001 nats per doubling at 95 % confidence): mha", sentence);
        Assert.Contains("not yet: mqa (0.0030 ± 0.0000 per doubling, 2,000 → 4,000)", sentence);
    }

    [Fact]
    public void ANotYetConvergedVariantSaysHowManySeedsTheTestWouldNeedOrThatItNeedsALongerRun()
    {
        // mha gains 0.0006, 0.0004, 0.0008 per doubling (mean 0.0006, sd 0.0002). At 3 seeds the upper bound
        // 0.0006 + 4.303·0.0002/√3 = 0.00110 misses 0.001; at 4 seeds 0.0006 + 3.182·0.0002/√4 = 0.00092 would pass.
        // mqa still gains 0.003 per doubling: more seeds cannot make it pass, only a longer run.
        var lengths = new[]
        {
            Length(1000, [.. Seeds("mha", 0.020, 0, 0, 0), .. Seeds("mqa", 0.030, 0, 0, 0)]),
            Length(2000, [.. Seeds("mha", 0.0194, 0, 0.0002, -0.0002), .. Seeds("mqa", 0.027, 0, 0, 0)]),
        };
        var c = FrontierConvergence.Analyze(lengths);
        var mha = c.Variants.Single(v => v.Variant == "mha");
        Assert.False(mha.Converged);
        Assert.Equal(0.0006, mha.Changes[^1].GainPerDoubling, 12);
        Assert.Equal(4, c.SeedsToPass(mha));
        var mqa = c.Variants.Single(v => v.Variant == "mqa");
        Assert.Null(c.SeedsToPass(mqa));
        var md = c.Markdown();
        Assert.Contains("| seeds to pass |", md);
        Assert.Matches(@"\| mha \|.*\| no \| — \| 4 \|", md);
        Assert.Matches(@"\| mqa \|.*\| no \| — \| longer run \|", md);
    }

    [Fact]
    public void StepChangesThatAreNotDoublingsAreScaledPerDoubling()
    {
        var change = new LengthChange(8000, 12000, 3, -0.01, 0.002);
        Assert.Equal(0.01 / Math.Log2(1.5), change.GainPerDoubling, 12);
        Assert.Equal(0.002 / Math.Log2(1.5), change.GainCi95PerDoubling, 12);
    }

    [Fact]
    public void OneRunLengthCannotTestConvergence()
    {
        var e = Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => FrontierConvergence.Analyze([Length(1000, Seeds("mha", 0.02, 0, 0))]));
        Assert.Contains("at least two different run lengths", e.Message);
    }

    [Fact]
    public void PoolMergesEachLengthAndTestsConvergenceOnTheLongest()
    {
        var parts = new[]
        {
            Length(1000, Seeds("mha", 0.020, 0, 0.0002, 0)),
            Length(2000, Seeds("mha", 0.0205, 0.0001, 0, 0)[..2]),        // seeds 0 and 1 in one process …
            Length(2000, Seeds("mha", 0.0205, 0.0001, 0, 0)[2..]) is var p ? p with { Options = p.Options with { Seeds = 1, FirstSeed = 2 } } : null!,   // … seed 2 in another
        };
        var pooled = MlaFrontier.Pool(parts);
        Assert.Equal(2000, pooled.Options.Loop.Steps);
        Assert.Equal(3, pooled.Points.Single().Seeds);
        Assert.False(pooled.Partial);
        Assert.NotNull(pooled.Convergence);
        Assert.Contains("Across run lengths (1,000, 2,000 steps)", pooled.Verdict);
        Assert.True(pooled.Convergence!.Variants.Single().Converged);
        var md = MlaFrontier.Markdown(pooled, "machine", "cmd");
        Assert.Contains("## Convergence across run lengths", md);
        Assert.Contains("| mha | 0.0211 ± ", md);
        var png = pooled.Convergence.Plot(200, 150);
        Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47 }, png[..4]);
        Assert.Null(MlaFrontier.Pool([parts[0]]).Convergence);            // one length: a plain merge
    }
    /// <summary>A length whose runs carry the exact KL: on shared eval sets (each run's sets read <paramref name="kl"/>
    /// ± 0.0002, so their mean is kl) or, with sets = 0, on the seed's own eval set only.</summary>
    internal static MlaFrontierResult WithKl(MlaFrontierResult length, Func<int, double> kl, int sets) => length with
    {
        Runs = length.Runs.Select(r => r with
        {
            Curve = [new CurvePoint(r.Curve[^1].Step, r.EvalLoss, 0.5) { EvalKl = kl(r.Seed) }],
            EvalSets = sets == 0 ? null : Enumerable.Range(0, sets).Select(j => new EvalScore(r.EvalLoss, 0.5, kl(r.Seed) + (j % 2 == 0 ? 0.0002 : -0.0002))).ToList(),
        }).ToList(),
    };

    [Fact]
    public void AStepChangeIsTestedOnTheExactKlWhenEveryRunOfBothLengthsRecordedIt()
    {
        // Sampled: the gain per doubling is 0.0005 on average but the seeds' own eval sets scatter it by ±0.003, so the
        // sampled test cannot pass. The exact KL of the same models gains 0.0005, 0.0004, 0.0006 (sd 1e-4).
        var shortRun = Length(1000, Seeds("mha", 0.0120, 0, 0, 0));
        var longRun = Length(2000, Seeds("mha", 0.0115, 0.003, -0.003, 0));
        double KlShort(int s) => 0.0100 + 0.001 * s;
        double KlLong(int s) => KlShort(s) - new[] { 0.0005, 0.0004, 0.0006 }[s];

        var sampled = FrontierConvergence.Analyze([shortRun, longRun]).Variants.Single();
        Assert.Null(sampled.Changes[^1].Kl);
        Assert.False(sampled.Converged);

        var c = FrontierConvergence.Analyze([WithKl(shortRun, KlShort, 4), WithKl(longRun, KlLong, 4)]);
        var v = c.Variants.Single();
        var change = v.Changes[^1];
        Assert.Equal(4, change.Kl!.Sets);
        Assert.Equal(0.0005, change.TestedGainPerDoubling, 12);
        Assert.Equal(4.302652729911275 * 0.0001 / Math.Sqrt(3), change.TestedGainCi95PerDoubling, 12);
        Assert.Equal(sampled.Changes[^1].GainPerDoubling, change.GainPerDoubling, 12);   // the sampled change is still there
        Assert.True(v.Converged);                                          // 0.0005 + 0.00025 < 0.001
        Assert.Equal(0.0110, v.Lengths[0].Kl!.Mean, 12);                   // the level's KL: the mean over the sets
        var md = c.Markdown();
        Assert.Contains("KL×4 0.0005 ± 0.0002 (sampled 0.0005 ± ", md);
        Assert.Contains("; KL×4 0.0110 ± ", md);
        Assert.Contains("converged (the last step change gains < 0.001 nats per doubling at 95 % confidence): mha", c.Sentence());

        // Own-set KL at both lengths is paired too (the same eval set per seed): the same numbers, labelled "KL own".
        var own = FrontierConvergence.Analyze([WithKl(shortRun, KlShort, 0), WithKl(longRun, KlLong, 0)]).Variants.Single();
        Assert.Equal((0, 0.0005), (own.Changes[^1].Kl!.Sets, Math.Round(own.Changes[^1].TestedGainPerDoubling, 12)));
        Assert.True(own.Converged);
        // Shared sets at one length and own-set KL at the other: the own-set KL is what both have.
        Assert.Equal(0, FrontierConvergence.Analyze([WithKl(shortRun, KlShort, 0), WithKl(longRun, KlLong, 4)]).Variants.Single().Changes[^1].Kl!.Sets);
        // A length recorded before the KL was: the sampled test, as before.
        var older = FrontierConvergence.Analyze([shortRun, WithKl(longRun, KlLong, 4)]).Variants.Single();
        Assert.Null(older.Changes[^1].Kl);
        Assert.False(older.Converged);
    }
}
