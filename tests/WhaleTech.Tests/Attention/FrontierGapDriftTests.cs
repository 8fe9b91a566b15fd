using WhaleTech.Lab.Mla;
using static WhaleTech.Tests.Attention.FrontierConvergenceTests;

namespace WhaleTech.Tests.Attention;

/// <summary>The gap to the reference across run lengths: paired per seed, per doubling, with an equivalence test.</summary>
public class FrontierGapDriftTests
{
    // mha (the reference: the largest cache) gains 0.005 from 1,000 to 2,000 steps. mqa gains the same: its gap stays
    // 0.004 (per seed +0.0001, −0.0001, 0 of drift: sd 1e-4). mla catches up: its gap falls from 0.004 to 0.002.
    static readonly MlaFrontierResult[] Lengths =
    [
        Length(1000, [.. Seeds("mha", 0.020, 0, 0, 0), .. Seeds("mqa", 0.024, 0, 0, 0), .. Seeds("mla", 0.024, 0, 0, 0)]),
        Length(2000, [.. Seeds("mha", 0.015, 0, 0, 0), .. Seeds("mqa", 0.019, 0.0001, -0.0001, 0), .. Seeds("mla", 0.017, 0, 0, 0)]),
    ];

    [Fact]
    public void AGapThatNoLongerMovesWithTrainingIsSettledAndOneThatClosesIsNot()
    {
        var d = FrontierGapDrift.Analyze(Lengths)!;
        Assert.Equal("mha", d.Reference);
        var mqa = d.Rows.Single(r => r.Variant == "mqa");
        Assert.Equal((1000, 2000, 3, "sampled"), (mqa.FromSteps, mqa.ToSteps, mqa.Pairs, mqa.Estimator));
        Assert.Equal(0.004, mqa.GapFrom, 12);
        Assert.Equal(0.004, mqa.GapTo, 12);
        Assert.Equal(0, mqa.DriftPerDoubling, 12);
        Assert.Equal(4.302652729911275 * 0.0001 / Math.Sqrt(3), mqa.DriftCi95PerDoubling, 12);   // t(0.975, 2)·s/√3
        Assert.True(mqa.SettledWithin(0.001));                           // 0 + 0.00025 < 0.001
        Assert.False(mqa.SettledWithin(0.0002));
        var mla = d.Rows.Single(r => r.Variant == "mla");
        Assert.Equal(-0.002, mla.DriftPerDoubling, 12);                  // it catches up: not settled
        Assert.False(mla.SettledWithin(0.001));
        var sentence = d.Sentence();
        Assert.Matches(@"Gaps to mha across run lengths, settled \(the last change moves the gap by < 0\.001 nats per doubling at 95 % confidence\): mqa \(sampled, 1,000 → 2,000: gap \+0\.0040 → \+0\.0040, 0\.0000 ± 0\.0002 per doubling\)", sentence);
        Assert.Contains("not settled: mla (sampled, 1,000 → 2,000: gap +0.0040 → +0.0020, −0.0020 ± 0.0000 per doubling)", sentence);
    }

    [Fact]
    public void TheExactKlIsUsedWhenAllFourRunsHaveItAndAPooledFrontierReportsTheDrift()
    {
        // Every run's KL reads the same per seed, whatever the variant: by the KL every gap is 0 and settled.
        var kl = FrontierGapDrift.Analyze([WithKl(Lengths[0], s => 0.01 + 0.001 * s, 4), WithKl(Lengths[1], s => 0.008 + 0.001 * s, 4)])!;
        Assert.All(kl.Rows, r => Assert.Equal(("KL×4", 0.0), (r.Estimator, Math.Round(r.DriftPerDoubling, 12))));
        // One length without the KL: the sampled estimator for that pair of lengths.
        Assert.All(FrontierGapDrift.Analyze([Lengths[0], WithKl(Lengths[1], s => 0.008, 4)])!.Rows, r => Assert.Equal("sampled", r.Estimator));

        var pooled = MlaFrontier.Pool(Lengths);
        Assert.NotNull(pooled.GapDrift);
        Assert.Contains("Gaps to mha across run lengths", pooled.Verdict);
        var md = MlaFrontier.Markdown(pooled, "machine", "cmd");
        Assert.Contains("## The gap to mha across run lengths", md);
        Assert.Matches(@"\| mla \| 1,000 → 2,000 \| 3 \| sampled \| \+0\.0040 ± 0\.0000 \| \+0\.0020 ± 0\.0000 \| −0\.0020 ± 0\.0000 \| no \|", md);
        Assert.Null(MlaFrontier.Pool([Lengths[0]]).GapDrift);            // one length: nothing to compare
        Assert.Null(FrontierGapDrift.Analyze([Length(1000, Seeds("mha", 0.02, 0, 0)), Length(2000, Seeds("mqa", 0.02, 0, 0))]));   // no length has both
    }
}
