// Training comparison (DeepSeek-V3 §3.3, Figure 10 / Appendix B.1): the same small DeepSeekLM trained with
// its linears in BF16, with the DeepSeek-V3 FP8 recipe and with the hybrid per-tensor recipe, over several
// seeds; reported as the relative loss gap (L_recipe − L_bf16) / L_bf16 of the evaluation loss (DeepSeek:
// < 0.25%). For every seed all recipes start from the same weights and see the same batches, because every
// model is built through Fp8Linears.Factory (same parameter shapes and random draws) and only the recipe of
// the Fp8Linear layers differs. High-precision islands (embedding, lm_head, norms, attention core) stay FP32.
// Each recipe can also run with AdamW's moments in BF16 (DeepSeek-V3 §3.3 "Low-Precision Optimizer States";
// Training/AdamWOptimizer.cs): such a run is labelled "<recipe>+bf16-moments", and MomentGaps reports
// (L_bf16-moments − L_fp32-moments) / L_fp32-moments per recipe and seed.
//
// Every (recipe, seed) run can keep a run folder (Lab/Runs/ExperimentRuns): Ctrl-C and --resume, bit-exact.
//
// Shapes: batches [B, T] token ids; the model is ModelConfig.Tiny with the given hidden size.
using TorchSharp;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Training;
using static TorchSharp.torch;
using WhaleTech.Core;

using WhaleTech.Fp8;
using WhaleTech.Lab.Runs;

namespace WhaleTech.Lab.Fp8;

public sealed record Fp8ComparisonOptions
{
    /// <summary>Steps, batch and peak learning rate (warm-up 10 %, cosine to lr/10).</summary>
    public TrainingLoop Loop { get; init; } = new() { Steps = 200, BatchSize = 16, LearningRate = 3e-3 };
    public ModelShape Model { get; init; } = new() { Hidden = 128, Layers = 2, Heads = 4 };
    public string Attention { get; init; } = "mla";
    public int SequenceLength { get; init; } = 64;
    public int EvalBatches { get; init; } = 8;
    public int CorpusCharacters { get; init; } = 50_000;
    public int[] Seeds { get; init; } = [1, 2, 3];
    /// <summary>AdamW moment precisions to run every recipe with (json `optimizer_moments`).</summary>
    [System.Text.Json.Serialization.JsonPropertyName("optimizer_moments")]
    public MomentPrecision[] OptimizerMoments { get; init; } = [MomentPrecision.Fp32];
}

/// <summary>One training run: training loss per step and the final evaluation loss. <see cref="Recipe"/> is the
/// run's label: the recipe name, with "+bf16-moments" appended when AdamW's moments were BF16.</summary>
public sealed record Fp8Run(string Recipe, int Seed, double[] Loss, double FinalEvalLoss, int SkippedSteps, double Seconds)
{
    /// <summary>"fp32" or "bf16": storage of AdamW's m and v.</summary>
    public string Moments { get; init; } = "fp32";
    /// <summary>Bytes of AdamW state (m + v) of the run: 8 per parameter in FP32, 4 in BF16.</summary>
    public long OptimizerStateBytes { get; init; }
}

/// <summary>Mean relative gap of one recipe's final evaluation loss against the baseline, over seeds.</summary>
public sealed record Fp8Gap(string Recipe, double MeanRelativeGap, double[] PerSeed, double MeanFinalEvalLoss);

public static class Fp8TrainingComparison
{
    /// <summary>Trains one model per (recipe, seed) on the synthetic corpus and returns the runs. With <paramref name="runs"/>
    /// (Lab/Runs) every run keeps a run folder, a resume skips the finished ones, and after Ctrl-C the list holds the
    /// finished runs only (runs.Interrupted tells). A run of a recipe with a stateful scaling policy (delayed: amax
    /// histories) is not checkpointed mid-way; interrupted, it restarts from step 0 on resume.</summary>
    public static List<Fp8Run> Run(IEnumerable<Fp8Recipe> recipes, Fp8ComparisonOptions o, Device device, Action<Fp8Run>? onRun = null, ExperimentRuns? runs = null)
    {
        o.Loop.Validate();
        o.Model.Validate();
        if (o.OptimizerMoments.Length == 0) throw new WhaleArgumentException("optimizer_moments", o.OptimizerMoments, "must name fp32, bf16 or both");
        if (o.Seeds.Length == 0) throw new WhaleArgumentException("seeds", o.Seeds, "must name at least one seed");
        var recipeList = recipes.ToList();
        runs?.Begin("fp8-training", new { options = o, recipes = recipeList });
        var tok = new CharTokenizer();
        var train = tok.Encode(new SyntheticCorpus(o.CorpusCharacters, seed: 1).Text);
        var eval = tok.Encode(new SyntheticCorpus(o.CorpusCharacters / 5, seed: 2).Text);
        var results = new List<Fp8Run>();
        foreach (var seed in o.Seeds)
            foreach (var recipe in recipeList)
            foreach (var moments in o.OptimizerMoments)
            {
                if (runs?.StopRequested == true) return results;
                using var run = runs?.Open($"{Label(recipe.Name, moments)} seed {seed}", resumable: Fp8ScalingPolicies.Get(recipe.ScalingPolicy).Stateless);
                var r = run?.Finished<Fp8Run>() ?? RunOne(recipe, moments, seed, o, train, eval, tok.VocabSize, device, run);
                if (r is null) return results;
                results.Add(r);
                onRun?.Invoke(r);
            }
        return results;
    }

    /// <summary>One (recipe, moments, seed) run; null when Ctrl-C stopped it (after its current step).</summary>
    static Fp8Run? RunOne(Fp8Recipe recipe, MomentPrecision moments, int seed, Fp8ComparisonOptions o, int[] trainTokens, int[] evalTokens, int vocab, Device device, ExperimentRun? run)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        torch.manual_seed(seed);
        var config = o.Model.Tiny(o.Attention, vocab);
        using var model = new DeepSeekLM(config, Fp8Linears.Factory(recipe, initStd: config.InitializerRange));
        model.to(device);
        var options = new TrainOptions(o.Loop)
        {
            SequenceLength = o.SequenceLength,
            MinLearningRate = o.Loop.LearningRate / 10, WarmupSteps = Math.Max(1, o.Loop.Steps / 10), EvalEvery = o.Loop.Steps, EvalBatches = o.EvalBatches, Seed = seed,
            OptimizerMoments = moments,
        };
        var trainer = new LmTrainer(model, options) { Warn = _ => { } };
        var train = new TokenWindowStream(trainTokens, o.Loop.BatchSize, o.SequenceLength, seed);
        var history = new List<StepMetrics>();
        if (run?.Start(model, trainer.Optimizer) is { } resumed)
        {
            trainer.RestoreStep(resumed.Step);
            train.Skip(resumed.DataPosition - train.BatchesDrawn);
            history.AddRange(RunCheckpoint.StateAs<List<StepMetrics>>(resumed) ?? []);
        }
        // LmTrainer.Run's loop, one step at a time so the run folder can checkpoint between steps (EvalEvery = Steps:
        // one evaluation, at the end).
        while (trainer.Step < o.Loop.Steps)
        {
            StepMetrics m;
            using (var scope = torch.NewDisposeScope())
            {
                var (x, y) = train.Next(device);
                m = trainer.TrainStep(x, y);
            }
            if (m.Step == o.Loop.Steps)
                m = m with { EvalLoss = trainer.Evaluate(new TokenWindowStream(evalTokens, o.Loop.BatchSize, o.SequenceLength, 1000 + seed), o.EvalBatches, device) };
            history.Add(m);
            var scalars = new Dictionary<string, double> { ["loss"] = m.Loss, ["learning_rate"] = m.LearningRate, ["grad_norm"] = m.GradNorm, ["skipped"] = m.Skipped ? 1 : 0 };
            if (m.EvalLoss is { } ev) scalars["eval/loss"] = ev;
            run?.Log(m.Step, scalars);
            if (run?.AfterStep(m.Step, o.Loop.Steps, model, trainer.Optimizer, train.BatchesDrawn, () => history) == true) return null;
        }
        var result = new Fp8Run(Label(recipe.Name, moments), seed, history.Select(h => h.Loss).ToArray(), history[^1].EvalLoss ?? double.NaN,
                                history.Count(h => h.Skipped), clock.Elapsed.TotalSeconds)
                     { Moments = moments.Name(), OptimizerStateBytes = trainer.Optimizer.StateBytes };
        run?.Finish(result);
        return result;
    }

    /// <summary>The label of a run: the recipe name, plus "+bf16-moments" for BF16 AdamW moments.</summary>
    public static string Label(string recipe, MomentPrecision moments)
        => moments == MomentPrecision.Fp32 ? recipe : recipe + "+" + moments.Name() + "-moments";

    /// <summary>Per recipe run with both moment precisions: (L_bf16-moments − L_fp32-moments) / L_fp32-moments of the
    /// final evaluation loss, per seed and the mean; labelled by the recipe name.</summary>
    public static List<Fp8Gap> MomentGaps(IReadOnlyList<Fp8Run> runs)
    {
        var gaps = new List<Fp8Gap>();
        foreach (var bf in runs.Where(r => r.Moments == "bf16").GroupBy(r => r.Recipe))
        {
            var recipe = bf.Key[..^"+bf16-moments".Length];
            var pairs = bf.Select(r => (r, f: runs.FirstOrDefault(x => x.Recipe == recipe && x.Seed == r.Seed))).Where(p => p.f is not null).ToList();
            if (pairs.Count == 0) continue;
            var perSeed = pairs.Select(p => (p.r.FinalEvalLoss - p.f!.FinalEvalLoss) / p.f.FinalEvalLoss).ToArray();
            gaps.Add(new Fp8Gap(recipe, perSeed.Average(), perSeed, pairs.Average(p => p.r.FinalEvalLoss)));
        }
        return gaps;
    }

    /// <summary>(L_recipe − L_baseline) / L_baseline of the final evaluation loss, per seed and its mean.</summary>
    public static List<Fp8Gap> Gaps(IReadOnlyList<Fp8Run> runs, string baseline = "bf16")
    {
        var gaps = new List<Fp8Gap>();
        foreach (var group in runs.GroupBy(r => r.Recipe))
        {
            var perSeed = group.Select(r =>
            {
                var b = runs.FirstOrDefault(x => x.Recipe == baseline && x.Seed == r.Seed)
                        ?? throw new WhaleArgumentException("baseline", baseline, $"must have a run for seed {r.Seed}");
                return (r.FinalEvalLoss - b.FinalEvalLoss) / b.FinalEvalLoss;
            }).ToArray();
            gaps.Add(new Fp8Gap(group.Key, perSeed.Average(), perSeed, group.Average(r => r.FinalEvalLoss)));
        }
        return gaps;
    }

    /// <summary>Relative gap curve of the training loss against the baseline, smoothed over a window, mean over seeds.</summary>
    public static double[] GapCurve(IReadOnlyList<Fp8Run> runs, string recipe, string baseline = "bf16", int window = 20)
    {
        var pairs = runs.Where(r => r.Recipe == recipe)
            .Select(r => (r, b: runs.First(x => x.Recipe == baseline && x.Seed == r.Seed))).ToList();
        if (pairs.Count == 0) return [];
        int n = pairs.Min(p => Math.Min(p.r.Loss.Length, p.b.Loss.Length));
        var curve = new double[n];
        for (int t = 0; t < n; t++)
        {
            int from = Math.Max(0, t - window + 1);
            curve[t] = pairs.Average(p =>
            {
                double a = p.r.Loss[from..(t + 1)].Average(), b = p.b.Loss[from..(t + 1)].Average();
                return (a - b) / b;
            });
        }
        return curve;
    }
}
