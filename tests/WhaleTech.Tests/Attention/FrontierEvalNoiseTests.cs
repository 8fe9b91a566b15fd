using WhaleTech.Lab.Mla;

namespace WhaleTech.Tests.Attention;

// FrontierEvalNoise's three standard deviations on hand-made numbers (sample sd, n − 1), and one tiny real run.
public class FrontierEvalNoiseTests
{
    static FrontierRun Run(string v, int seed, double bytes, double ownLoss, params (double Loss, double Kl)[] sets) =>
        new(v, seed, 100, (long)(bytes / 2), bytes, ownLoss, 0.5, true, [new CurvePoint(10, ownLoss, 0.5)])
            { EvalSets = sets.Select(x => new EvalScore(x.Loss, 0.5, x.Kl)).ToList() };

    [Fact]
    public void LevelsGapsAndGainsSplitIntoEvalSetAndTrainingSpread()
    {
        var d = new MlaFrontierOptions();
        MlaFrontierResult At(int steps, double shift) => new(d with { Variants = ["mha", "mqa"], Loop = d.Loop with { Steps = steps } },
            Enumerable.Range(0, 3).SelectMany(s => new[]
            {
                // mha: the two sets differ by 0.02 (sampled) and 0.001 (KL); the seeds by 0.01 (KL) and 0.02 (own set)
                Run("mha", s, 256, 0.2 + 0.02 * s - shift - (shift > 0 ? 0.001 * s : 0), (0.10 + 0.01 * s - shift, 0.100 + 0.01 * s - shift), (0.12 + 0.01 * s - shift, 0.101 + 0.01 * s - shift)),
                // mqa: mha + 0.05 on set 0 and + 0.07 on set 1 (sampled), + 0.05 on both (KL)
                Run("mqa", s, 64, 0.25 + 0.02 * s, (0.15 + 0.01 * s, 0.150 + 0.01 * s), (0.19 + 0.01 * s, 0.151 + 0.01 * s)),
            }).ToList(), [], "");
        var a = At(10, 0); var b = At(20, 0.004);
        var pooled = MlaFrontier.Pool([a with { Points = MlaFrontier.Summarize(a.Runs) }, b with { Points = MlaFrontier.Summarize(b.Runs) }]);
        var noise = pooled.EvalNoise!;

        var level = noise.Rows.Single(r => r is { Quantity: "excess loss", Variant: "mha", Steps: 10 });
        Assert.Equal((3, 2), (level.Seeds, level.Sets));
        Assert.Equal(Math.Sqrt(0.0002), level.SampledEvalSd, 12);          // two values 0.02 apart: variance 0.02² / 2
        Assert.Equal(Math.Sqrt(0.0000005), level.KlEvalSd, 12);
        Assert.Equal(0.01, level.TrainingSd, 12);                         // set-mean KL 0.1005 + 0.01 s
        Assert.Equal(0.02, level.ObservedSd, 12);
        Assert.Equal(0.5, level.EvalShare, 9);
        Assert.Equal(0.1105, level.MeanKl, 12);

        var gap = noise.Rows.Single(r => r is { Quantity: "paired Δ vs mha", Variant: "mqa", Steps: 10 });
        Assert.Equal(0.05, gap.MeanKl, 12);
        Assert.Equal(0, gap.KlEvalSd, 12);
        Assert.Equal(Math.Sqrt(0.0002), gap.SampledEvalSd, 12);          // 0.05 and 0.07

        var gain = noise.Rows.Single(r => r is { Quantity: "gain per doubling", Variant: "mha" });
        Assert.Equal((10, 20), (gain.FromSteps, gain.Steps));
        Assert.Equal(0.004, gain.MeanKl, 12);                             // 0.004 over one doubling
        Assert.Equal(0, gain.SampledEvalSd, 12);
        Assert.Equal(0, gain.TrainingSd, 12);
        Assert.Equal(0.001, gain.ObservedSd, 12);                         // own set: 0.004 + 0.001 s
        Assert.Contains("## Eval noise", MlaFrontier.Markdown(pooled, "machine", "command"));
        Assert.All(pooled.Points, p => Assert.Equal(2, p.ExactKlSharedSets)); // the KL columns average the shared sets

        var plain = a with { Runs = a.Runs.Select(r => r with { EvalSets = null }).ToList() };
        Assert.Null(FrontierEvalNoise.Analyze([plain]));
        Assert.All(MlaFrontier.Summarize(plain.Runs), p => Assert.Null(p.MeanExactKl));   // older runs: neither sets nor curve KL
    }

    [Fact]
    public void ARunScoresEveryFinalModelOnTheSharedSetsWithBothEstimators()
    {
        var d = new MlaFrontierOptions();
        var o = d with
        {
            TaskKind = "language", Topics = 2, Length = 8, Values = 6, Variants = ["mha", "mqa"], Seeds = 2, Loop = d.Loop with { Steps = 8 },
            EvalEvery = 4, EvalSequences = 16, WarmupSteps = 2, EvalSets = 3,
        };
        var r = MlaFrontier.Run(o, TorchSharp.torch.CPU);
        Assert.All(r.Runs, run =>
        {
            Assert.Equal(3, run.EvalSets!.Count);
            Assert.All(run.EvalSets, s => Assert.InRange(s.Kl, 0, Math.Log(6)));   // an under-trained model: KL in (0, ln V]
            Assert.All(run.Curve, p => Assert.NotNull(p.EvalKl));
        });
        Assert.NotEqual(r.Runs[0].EvalSets![0].Loss, r.Runs[0].EvalSets![1].Loss);   // the sets differ
        Assert.Contains(r.EvalNoise!.Rows, x => x.Quantity == "paired Δ vs mha");
        Assert.All(r.Points, p => Assert.NotNull(p.MeanExactKl));           // every run recorded the KL: the table shows it
        var mqa = r.Points.Single(p => p.Variant == "mqa");
        Assert.NotNull(mqa.PairedKlDifference);
        Assert.Equal(3, mqa.ExactKlSharedSets);                             // every run has the shared sets: their mean
        double Shared(string v, int seed) => r.Runs.Single(x => x.Variant == v && x.Seed == seed).EvalSets!.Average(x => x.Kl);
        Assert.Equal((Shared("mqa", 0) - Shared("mha", 0) + Shared("mqa", 1) - Shared("mha", 1)) / 2, mqa.PairedKlDifference!.Value, 12);
        Assert.Contains("| variant | exact KL (mean ± 95 % CI)", MlaFrontier.Markdown(r, "machine", "command"));
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => (o with { EvalSets = -1 }).Validate());
    }
}
