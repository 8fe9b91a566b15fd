// Quality vs KV bytes per token, trained to convergence: MHA, GQA (several group counts), MQA and MLA (several
// kv_lora_rank and RoPE dims) at matched parameter count (the dense MLP is resized to the MHA model's total), on
// multi-query associative recall (MQAR, Arora et al. 2023) — the task where a smaller cache should hurt first — or a
// synthetic topic-mixture language whose Bayes loss is computed exactly (FrontierTasks.cs). Results are excess loss
// over the Bayes-optimal loss (MQAR's is 0: each queried value is determined by the context).
//
// Why this task and budget: MlaQuality's 8-pair MQAR stopped at ≈30 % recall after 1,500 steps on the 2-core CPU (benchmarks/results/mla-quality-cpu-1500)
// (learning speed only). Here the task is scaled down (4 pairs, 4 queries, 16 keys × 16 values, T = 16) and every
// model is trained with a warm-up + cosine schedule. A run's "flat tail" (eval accuracy over the last quarter moves by
// < FlatTailDelta and its eval loss by < 10 %) is flagged in every output, but under a cosine schedule it does not show
// convergence: convergence is tested across run lengths (FrontierConvergence.cs, and whether the gaps between variants
// still move: FrontierGapDrift.cs), by pooling frontiers of several
// lengths with Pool (`whale mla frontier --from`).
//
// Statistics: mean and 95 % Student-t confidence interval over seeds (Lab/SeedStatistics.cs), per variant; the verdict
// compares each variant's interval with the best one's.
//
// Every (variant, seed) run can keep a run folder (Lab/Runs/ExperimentRuns): Ctrl-C and --resume, bit-exact. The result
// files (JSON, Markdown, plots) are MlaFrontierFiles.cs.
//
// Shapes: B batch, T sequence (MQAR: 2(N + Q)), D hidden, H heads, Dh head dim, Hkv KV heads, Dc kv_lora_rank, Dr RoPE dim.
using System.Text;
using TorchSharp;
using WhaleTech.Attention;
using WhaleTech.Core;
using WhaleTech.Lab.Runs;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Training;
using static TorchSharp.torch;

namespace WhaleTech.Lab.Mla;

/// <summary>One attention configuration of the frontier: standard (kvHeads) or MLA (kv_lora_rank, RoPE dims).</summary>
public sealed record FrontierVariant(string Name, string Attention, int KvHeads = 0, int KvLoraRank = 0, int RopeDims = 0)
{
    public static FrontierVariant Parse(string s)
    {
        var t = s.Trim().ToLowerInvariant();
        if (t == "mha") return new("mha", "mha");
        if (t == "mqa") return new("mqa", "mqa", 1);
        if (t.StartsWith("gqa", StringComparison.Ordinal) && int.TryParse(t[3..], out int g) && g > 0) return new(t, "gqa", g);
        var parts = t.Split('-');
        if (parts.Length == 3 && parts[0] == "mla" && int.TryParse(parts[1], out int dc) && int.TryParse(parts[2], out int dr) && dc > 0 && dr > 0)
            return new(t, "mla", 0, dc, dr);
        throw new WhaleArgumentException("variant", s, "must be mha, mqa, gqaN or mla-<kv_lora_rank>-<rope_dims>");
    }
}

public sealed record MlaFrontierOptions
{
    public string[] Variants { get; init; } = ["mha", "gqa2", "mqa", "mla-8-4", "mla-12-4", "mla-28-4", "mla-24-8"];
    public int Seeds { get; init; } = 3;
    /// <summary>The first seed: this experiment trains seeds FirstSeed … FirstSeed + Seeds − 1. A seed fixes the model's
    /// initialization, the data stream and the eval set, whichever process trains it, so an experiment's seeds can be
    /// split over processes (or sessions) and pooled with <see cref="MlaFrontier.Merge"/>.</summary>
    public int FirstSeed { get; init; }
    /// <summary>Steps, batch, peak learning rate (warm-up + cosine to lr/10), weight decay and clipping.</summary>
    public TrainingLoop Loop { get; init; } = new() { Steps = 2000, BatchSize = 32, LearningRate = 3e-3 };
    public int Pairs { get; init; } = 4;
    public int Queries { get; init; } = 4;
    public int Keys { get; init; } = 16;
    public int Values { get; init; } = 16;
    /// <summary>"mqar" or "language" (FrontierTasks.cs); the language uses Values symbols, Topics and Length.</summary>
    public string TaskKind { get; init; } = "mqar";
    public int Topics { get; init; } = 4;
    public int Length { get; init; } = 32;
    /// <summary>The shape every variant shares.</summary>
    public ModelShape Model { get; init; } = new() { Hidden = 32, Layers = 2, Heads = 4 };
    /// <summary>Most warm-up steps (a run warms up for min(this, steps / 10)).</summary>
    public int WarmupSteps { get; init; } = 100;
    public int EvalEvery { get; init; } = 100;
    public int EvalSequences { get; init; } = 512;
    /// <summary>Extra eval sets, shared by all seeds, on which every final model is scored to measure eval noise
    /// (FrontierEvalNoise.cs); 0 = none.</summary>
    public int EvalSets { get; init; }
    public double FlatTailDelta { get; init; } = 0.02;
    /// <summary>Excess loss (nats) that counts as "learned" for the learning-speed column.</summary>
    public double SpeedThreshold { get; init; } = 0.05;

    public int HeadDim => Model.Hidden / Model.Heads;
    public int SequenceLength => Data.SequenceLength;

    public MlaFrontierOptions Validate()
    {
        if (Variants.Length == 0) throw new WhaleArgumentException("variants", "", "must name at least one variant");
        foreach (var v in Variants) FrontierVariant.Parse(v);
        Guard.Positive("seeds", Seeds); Guard.InRange("first seed", FirstSeed, 0, 1_000_000); Loop.Validate();
        Guard.Positive("pairs", Pairs); Guard.InRange("queries", Queries, 1, Pairs); Guard.InRange("keys", Keys, Pairs, 10_000);
        Guard.Positive("values", Values); Model.Validate(); Guard.Divides("heads", Model.Heads, "hidden", Model.Hidden);
        Guard.Positive("eval every", EvalEvery); Guard.Positive("eval sequences", EvalSequences); Guard.InRange("eval sets", EvalSets, 0, 1000);
        if (TaskKind is not ("mqar" or "language")) throw new WhaleArgumentException("task", TaskKind, "must be mqar or language");
        if (TaskKind == "language") { Guard.InRange("topics", Topics, 1, 64); Guard.InRange("length", Length, 2, 4096); Guard.InRange("symbols", Values, 2, 256); }
        return this;
    }

    /// <summary>The MQAR task of MlaQuality with these sizes.</summary>
    public MlaQualityOptions Task => new() { Pairs = Pairs, Queries = Queries, Keys = Keys, Values = Values, Model = Model };

    /// <summary>The task these options train on (MQAR or the topic-mixture language).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public IFrontierTask Data => TaskKind == "language" ? new TopicBigramLanguage(Values, Topics, Length) : new MqarFrontierTask(Task);
}

/// <summary>One eval point: the sampled excess loss (EvalLoss) and, in runs recorded since it was added, the exact KL
/// (FrontierTasks.cs header) on the same eval set.</summary>
public sealed record CurvePoint(int Step, double EvalLoss, double EvalAccuracy)
{
    public double? EvalKl { get; init; }
}
/// <summary>Sampled excess loss, accuracy and exact KL of one model on one eval set.</summary>
public sealed record EvalScore(double Loss, double Accuracy, double Kl);
public sealed record FrontierRun(string Variant, int Seed, long Parameters, long KvElementsPerToken, double KvBytesPerTokenBf16,
    double EvalLoss, double EvalAccuracy, bool FlatTail, IReadOnlyList<CurvePoint> Curve)
{
    /// <summary>The final model scored on the shared eval sets of FrontierEvalNoise (only with EvalSets &gt; 0).</summary>
    public IReadOnlyList<EvalScore>? EvalSets { get; init; }
}
public sealed record FrontierPoint(string Variant, long Parameters, double KvBytesPerTokenBf16, int Seeds,
    double MeanAccuracy, double AccuracyCi95, double MeanExcessLoss, double ExcessLossCi95, int FlatTailRuns, bool OnFrontier)
{
    /// <summary>Learning speed: runs whose eval excess loss fell to ≤ SpeedThreshold, and the mean (95 % CI) of the first
    /// eval step where it did, over those runs (0 when none did).</summary>
    public int ReachedRuns { get; init; }
    public double MeanStepsToThreshold { get; init; }
    public double StepsToThresholdCi95 { get; init; }
    /// <summary>Paired comparison with the reference variant (the largest cache): every seed trains on the same data
    /// stream and is evaluated on the same eval set in every variant, so the per-seed difference of excess loss
    /// (this − reference) removes the seed's share of the spread. Mean and 95 % Student-t half-width over the seeds
    /// both have; empty for the reference itself.</summary>
    public string PairedReference { get; init; } = "";
    public double PairedDifference { get; init; }
    public double PairedDifferenceCi95 { get; init; }
    /// <summary>The same for the exact KL (FrontierTasks.cs header), when every run of the variant (for the gap: of both
    /// variants) recorded it; null otherwise.</summary>
    public double? MeanExactKl { get; init; }
    public double? ExactKlCi95 { get; init; }
    public double? PairedKlDifference { get; init; }
    public double? PairedKlCi95 { get; init; }
    /// <summary>How many shared eval sets the KL is averaged over (0: each seed's own eval set); the same for the
    /// paired KL gap, which uses what both variants' runs have (MlaFrontier.KlSets).</summary>
    public int ExactKlSharedSets { get; init; }
    public int PairedKlSharedSets { get; init; }
}
public sealed record MlaFrontierResult(MlaFrontierOptions Options, IReadOnlyList<FrontierRun> Runs, IReadOnlyList<FrontierPoint> Points, string Verdict)
{
    /// <summary>True when Ctrl-C stopped the experiment: Runs, Points and Verdict cover the finished runs only.</summary>
    public bool Partial { get; init; }
    /// <summary>Set by <see cref="MlaFrontier.Pool"/> when frontiers of several run lengths were pooled: these runs are
    /// the longest ones, and this is the test of convergence across the lengths.</summary>
    public FrontierConvergence? Convergence { get; init; }
    /// <summary>Set with <see cref="Convergence"/>: how each variant's paired gap to the reference moved between the
    /// run lengths (FrontierGapDrift.cs).</summary>
    public FrontierGapDrift? GapDrift { get; init; }
    /// <summary>The eval set's share of the seed spread, when the runs were scored on shared eval sets (EvalSets &gt; 0).</summary>
    public FrontierEvalNoise? EvalNoise { get; init; }
}

public static partial class MlaFrontier
{
    /// <summary>The config of <paramref name="variant"/>: D hidden, H heads of Dh = D/H; MLA with Dn = Dv = Dh and no
    /// q-LoRA; the dense MLP resized so the model has ≈ the MHA model's parameters.</summary>
    public static ModelConfig Config(MlaFrontierOptions o, FrontierVariant variant)
    {
        int dh = o.HeadDim;
        ModelConfig Make(FrontierVariant v, int intermediate) => new ModelConfig
        {
            VocabSize = o.Data.VocabSize, HiddenSize = o.Model.Hidden, IntermediateSize = intermediate, NumHiddenLayers = o.Model.Layers,
            NumAttentionHeads = o.Model.Heads, NumKeyValueHeads = v.Attention == "gqa" ? v.KvHeads : o.Model.Heads,
            KvLoraRank = v.Attention == "mla" ? v.KvLoraRank : 32, QLoraRank = null, QkNopeHeadDim = dh,
            QkRopeHeadDim = v.Attention == "mla" ? v.RopeDims : Math.Max(2, dh / 2 / 2 * 2), VHeadDim = dh,
            Attention = v.Attention, MaxPositionEmbeddings = Math.Max(64, o.SequenceLength), HeadDim = v.Attention == "mla" ? null : dh,
        }.Validate();
        return ParameterMatching.MatchMlp(i => Make(variant, i), i => Make(new FrontierVariant("mha", "mha"), i), o.Model.Hidden, o.Model.Layers);
    }

    /// <summary>KV-cache elements per token, all layers (MLA: the absorbed latent cache Dc + Dr).</summary>
    public static long KvElements(ModelConfig cfg) => cfg.AttentionVariant.KvElementsPerTokenPerLayer(cfg) * cfg.NumHiddenLayers;

    internal static (Tensor Loss, Tensor Correct) LossAndCorrect(DeepSeekLM model, Tensor ids, Tensor targets, Tensor mask)
        => LossAndCorrect(model.forward(ids), targets, mask);

    static (Tensor Loss, Tensor Correct) LossAndCorrect(Tensor logits, Tensor targets, Tensor mask)
    {
        var picked = logits[mask];
        var target = targets[mask];
        var loss = nn.functional.cross_entropy(picked.to_type(ScalarType.Float32), target);
        return (loss, picked.argmax(-1).eq(target).to_type(ScalarType.Float32).mean());
    }

    /// <summary>Eval excess loss (NLL − the task's Bayes NLL on the same tokens; MQAR's Bayes loss is 0) and accuracy on a
    /// fixed eval set.</summary>
    public static (double Loss, double Accuracy) Evaluate(DeepSeekLM model, MlaFrontierOptions o, int seed, Device device)
    {
        var s = Score(model, o.Data, o.EvalSequences, new Random(10_000 + seed), device);
        return (s.Loss, s.Accuracy);
    }

    /// <summary>Scores <paramref name="model"/> on <paramref name="sequences"/> eval sequences drawn with
    /// <paramref name="rng"/>: sampled excess loss, accuracy and exact KL (FrontierTasks.cs header).</summary>
    public static EvalScore Score(DeepSeekLM model, IFrontierTask data, int sequences, Random rng, Device device)
    {
        bool wasTraining = model.training;
        model.eval();
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var (ids, targets, mask) = data.Batch(sequences, rng);
        var logits = model.forward(ids.to(device));                                  // [B, T, V]
        var (loss, acc) = LossAndCorrect(logits, targets.to(device), mask.to(device));
        var (bayes, kl) = data.BayesLossAndKl(ids, targets, mask, nn.functional.log_softmax(logits.to_type(ScalarType.Float32), -1));
        var result = new EvalScore(loss.item<float>() - bayes, acc.item<float>(), kl);
        if (wasTraining) model.train();
        return result;
    }

    /// <summary>Trains <paramref name="model"/> for <paramref name="steps"/> AdamW steps (warm-up + cosine to 10 %), logging
    /// the eval curve every EvalEvery steps (and at step 0). Data seed <paramref name="dataSeed"/>.</summary>
    public static List<CurvePoint> Train(DeepSeekLM model, MlaFrontierOptions o, int steps, double lr, int dataSeed, int evalSeed, Device device, string label)
        => Train(model, o, steps, lr, dataSeed, evalSeed, device, label, run: null)!;

    /// <summary><see cref="Train(DeepSeekLM, MlaFrontierOptions, int, double, int, int, Device, string)"/> in a run folder
    /// (Lab/Runs): continues from the run's checkpoint when there is one; null when Ctrl-C stopped it (checkpoint written).</summary>
    public static List<CurvePoint>? Train(DeepSeekLM model, MlaFrontierOptions o, int steps, double lr, int dataSeed, int evalSeed, Device device, string label, ExperimentRun? run)
    {
        using var opt = new AdamWOptimizer(model.parameters(), lr, weightDecay: o.Loop.WeightDecay);
        var resumed = run?.Start(model, opt);
        var curve = resumed is null ? [] : RunCheckpoint.StateAs<List<CurvePoint>>(resumed) ?? [];
        var data = o.Data;
        CurvePoint Eval(int step)
        {
            var s = Score(model, data, o.EvalSequences, new Random(10_000 + evalSeed), device);
            return new CurvePoint(step, s.Loss, s.Accuracy) { EvalKl = s.Kl };
        }
        if (resumed is null) curve.Add(Eval(0));
        model.train();
        var stepper = new OptimizerStepper(opt, model.parameters(), maxGradNorm: o.Loop.GradClip, maxNonFiniteInRow: 1)
            { Warn = w => throw new WhaleException($"{label}: {w}") };
        var schedule = new LrSchedule(lr, Math.Min(o.WarmupSteps, steps / 10), steps, lr / 10).Validate();
        var rng = new Random(dataSeed);
        int start = resumed?.Step ?? 0;
        for (int i = 0; i < start; i++)                                      // resume: the data stream replays to where the run stopped
        {
            using var scope = torch.NewDisposeScope();
            data.Batch(o.Loop.BatchSize, rng);
        }
        for (int step = start; step < steps; step++)
        {
            using var scope = torch.NewDisposeScope();
            stepper.SetLearningRate(schedule.At(step));
            var (ids, targets, mask) = data.Batch(o.Loop.BatchSize, rng);
            var outcome = stepper.Run(step, () => LossAndCorrect(model, ids.to(device), targets.to(device), mask.to(device)).Loss);
            var scalars = new Dictionary<string, double> { ["loss"] = outcome.Loss, ["grad_norm"] = outcome.GradNorm, ["learning_rate"] = schedule.At(step) };
            if ((step + 1) % o.EvalEvery == 0 || step + 1 == steps)
            {
                var point = Eval(step + 1);
                curve.Add(point);
                (scalars["eval/loss"], scalars["eval/accuracy"], scalars["eval/kl"]) = (point.EvalLoss, point.EvalAccuracy, point.EvalKl!.Value);
            }
            run?.Log(step + 1, scalars);
            if (run?.AfterStep(step + 1, steps, model, opt, step + 1, () => curve) == true) return null;
        }
        model.eval();
        return curve;
    }

    /// <summary>Flat tail: over the last quarter of the curve accuracy moves by &lt; delta and loss by &lt; 10 % (or &lt; 0.01 absolute).</summary>
    public static bool FlatTail(IReadOnlyList<CurvePoint> curve, double delta)
    {
        if (curve.Count < 4) return false;
        int last = curve[^1].Step;
        var tail = curve.Where(p => p.Step >= last * 3 / 4).ToList();
        if (tail.Count < 2) return false;
        double accRange = tail.Max(p => p.EvalAccuracy) - tail.Min(p => p.EvalAccuracy);
        double lossRange = tail.Max(p => p.EvalLoss) - tail.Min(p => p.EvalLoss);
        return accRange < delta && (lossRange < 0.1 * tail.Average(p => p.EvalLoss) || lossRange < 0.01);
    }


    /// <summary>Trains every variant × seed. With <paramref name="runs"/> (Lab/Runs) every run keeps a run folder, a resume skips
    /// the finished ones, and after Ctrl-C the result covers the finished runs and is marked Partial.</summary>
    public static MlaFrontierResult Run(MlaFrontierOptions options, Device device, Action<string>? log = null, ExperimentRuns? runs = null)
    {
        var o = options.Validate();
        Backend.Initialize();
        runs?.Begin("mla-frontier", o);
        var results = new List<FrontierRun>();
        foreach (var (v, seed) in o.Variants.Select(FrontierVariant.Parse).SelectMany(v => Enumerable.Range(o.FirstSeed, o.Seeds).Select(s => (v, s))))
        {
            if (runs?.StopRequested == true) break;
            using var run = runs?.Open($"{v.Name} seed {seed}");
            var r = run?.Finished<FrontierRun>();
            if (r is null)
            {
                var cfg = Config(o, v);
                torch.manual_seed(1000 + seed);
                using var model = new DeepSeekLM(cfg);
                model.to(device);
                var curve = Train(model, o, o.Loop.Steps, o.Loop.LearningRate, seed, seed, device, $"{v.Name} seed {seed}", run);
                if (curve is null) break;
                long kv = KvElements(cfg);
                r = new FrontierRun(v.Name, seed, model.ParameterCount(), kv, kv * 2.0, curve[^1].EvalLoss, curve[^1].EvalAccuracy, FlatTail(curve, o.FlatTailDelta), curve)
                    { EvalSets = o.EvalSets == 0 ? null : FrontierEvalNoise.Score(model, o, device) };
                run?.Finish(r);
            }
            results.Add(r);
            log?.Invoke($"{v.Name} seed {seed}: params {r.Parameters:N0}, KV {r.KvElementsPerToken * 2} B/token, eval loss {r.EvalLoss:F4}, accuracy {r.EvalAccuracy:P1}, flat tail {r.FlatTail}");
        }
        var points = Summarize(results, o.SpeedThreshold);
        var result = new MlaFrontierResult(o, results, points, Verdict(points)) { Partial = runs?.Interrupted == true };
        return result with { EvalNoise = FrontierEvalNoise.Analyze([result]) };
    }

    /// <summary>The first eval step whose excess loss is ≤ <paramref name="threshold"/>, or null.</summary>
    public static int? StepsTo(IReadOnlyList<CurvePoint> curve, double threshold) => curve.FirstOrDefault(p => p.EvalLoss <= threshold)?.Step;

    public static IReadOnlyList<FrontierPoint> Summarize(IReadOnlyList<FrontierRun> runs, double speedThreshold = 0.05)
    {
        var pts = runs.GroupBy(r => r.Variant).Select(g =>
        {
            var (acc, accCi) = SeedStatistics.MeanCi95(g.Select(r => r.EvalAccuracy).ToArray());
            var (loss, lossCi) = SeedStatistics.MeanCi95(g.Select(r => r.EvalLoss).ToArray());
            var reached = g.Select(r => StepsTo(r.Curve, speedThreshold)).Where(x => x is not null).Select(x => (double)x!.Value).ToArray();
            var (steps, stepsCi) = reached.Length == 0 ? (0.0, 0.0) : SeedStatistics.MeanCi95(reached);
            return new FrontierPoint(g.Key, g.First().Parameters, g.First().KvBytesPerTokenBf16, g.Count(), acc, accCi, loss, lossCi, g.Count(r => r.FlatTail), false)
                { ReachedRuns = reached.Length, MeanStepsToThreshold = steps, StepsToThresholdCi95 = stepsCi };
        }).OrderBy(p => p.KvBytesPerTokenBf16).ThenBy(p => p.Variant).ToList();
        // Pareto frontier: no other point has ≤ bytes and a strictly lower mean excess loss
        pts = pts.Select(p => p with { OnFrontier = !pts.Any(q => q != p && q.KvBytesPerTokenBf16 <= p.KvBytesPerTokenBf16 && q.MeanExcessLoss < p.MeanExcessLoss) }).ToList();
        // The exact KL, per variant: the mean over the shared eval sets when every run of the variant has them (the
        // lowest-noise number: the eval noise averages out and the seeds share the sets), else the seed's own eval set
        // when every run recorded it (KlSets). A paired gap uses what both variants' runs have.
        IEnumerable<FrontierRun> Of(string variant) => runs.Where(r => r.Variant == variant);
        pts = pts.Select(p =>
        {
            if (KlSets(Of(p.Variant)) is not int sets) return p;
            var (mean, ci) = SeedStatistics.MeanCi95(Of(p.Variant).Select(r => ExactKl(r, sets)).ToArray());
            return p with { MeanExactKl = mean, ExactKlCi95 = ci, ExactKlSharedSets = sets };
        }).ToList();
        if (pts.Count < 2) return pts;
        var reference = pts.MaxBy(p => p.KvBytesPerTokenBf16)!.Variant;
        Dictionary<int, double> BySeed(string variant, Func<FrontierRun, double> value) => Of(variant).ToDictionary(r => r.Seed, value);
        return pts.Select(p =>
        {
            if (p.Variant == reference) return p;
            if (SeedStatistics.Paired(BySeed(reference, r => r.EvalLoss), BySeed(p.Variant, r => r.EvalLoss)) is not { } d) return p;
            p = p with { PairedReference = reference, PairedDifference = d.Mean, PairedDifferenceCi95 = d.Ci95 };
            return KlSets(Of(reference).Concat(Of(p.Variant))) is int sets
                && SeedStatistics.Paired(BySeed(reference, r => ExactKl(r, sets)), BySeed(p.Variant, r => ExactKl(r, sets))) is { } k
                ? p with { PairedKlDifference = k.Mean, PairedKlCi95 = k.Ci95, PairedKlSharedSets = sets }
                : p;
        }).ToList();
    }

    /// <summary>How the exact KL of <paramref name="runs"/> compares: over the first N shared eval sets when every run
    /// has them (N, the fewest any run has), else on each seed's own eval set when every run recorded its KL (0), else
    /// not at all (null: runs recorded before the KL was).</summary>
    public static int? KlSets(IEnumerable<FrontierRun> runs)
    {
        var list = runs.ToList();
        if (list.Count == 0) return null;
        if (list.All(r => r.EvalSets is { Count: > 0 })) return list.Min(r => r.EvalSets!.Count);
        return list.All(r => r.Curve.Count > 0 && r.Curve[^1].EvalKl is not null) ? 0 : null;
    }

    /// <summary>Run <paramref name="r"/>'s final exact KL: the mean over its first <paramref name="sets"/> shared eval
    /// sets, or (0) on its own eval set.</summary>
    public static double ExactKl(FrontierRun r, int sets) => sets > 0 ? r.EvalSets!.Take(sets).Average(x => x.Kl) : r.Curve[^1].EvalKl!.Value;

    /// <summary>The plain-words verdict: which variants are indistinguishable from the best (overlapping 95 % CIs of the
    /// excess loss) and which are worse, at what cache size; non-converged points are named.</summary>
    public static string Verdict(IReadOnlyList<FrontierPoint> points, FrontierConvergence? convergence = null, FrontierGapDrift? gapDrift = null)
    {
        if (points.Count == 0) return "No run finished yet (interrupted before the first one ended).";
        var sb = new StringBuilder();
        var best = points.MinBy(p => p.MeanExcessLoss)!;
        var tied = points.Where(p => p.MeanExcessLoss - p.ExcessLossCi95 <= best.MeanExcessLoss + best.ExcessLossCi95).ToList();
        var worse = points.Except(tied).ToList();
        var smallestTied = tied.MinBy(p => p.KvBytesPerTokenBf16)!;
        sb.Append($"Lowest excess loss: {best.Variant} ({SeedStatistics.MeanCiCell(best.MeanExcessLoss, best.ExcessLossCi95, best.Seeds)} nats, {best.KvBytesPerTokenBf16:N0} B/token). ");
        var seedCounts = points.Select(p => p.Seeds).Distinct().Order().ToList();
        string seeds = seedCounts.Count > 1 ? $"{seedCounts[0]}–{seedCounts[^1]} seeds"
            : seedCounts[0] == 1 ? "1 seed, so no interval yet: pool more seeds with --from" : $"{seedCounts[0]} seeds";
        sb.Append($"Not separable from it at 95 % (overlapping Student-t intervals, {seeds}): {string.Join(", ", tied.Select(p => p.Variant))}; ");
        sb.Append($"the smallest cache among them is {smallestTied.Variant} at {smallestTied.KvBytesPerTokenBf16:N0} B/token. ");
        sb.Append(worse.Count == 0 ? "No variant is distinguishably worse. " : $"Distinguishably worse: {string.Join(", ", worse.Select(p => $"{p.Variant} ({SeedStatistics.MeanCiCell(p.MeanExcessLoss, p.ExcessLossCi95, p.Seeds)})"))}. ");
        var paired = points.Where(p => p.PairedReference != "" && p.Seeds >= 2).ToList();
        if (paired.Count > 0)
        {
            var pairedWorse = paired.Where(p => p.PairedDifference - p.PairedDifferenceCi95 > 0).ToList();
            var pairedBetter = paired.Where(p => p.PairedDifference + p.PairedDifferenceCi95 < 0).ToList();
            sb.Append($"Paired by seed against {paired[0].PairedReference} (same data and eval set per seed): ");
            sb.Append(pairedWorse.Count == 0 ? "none is distinguishably worse" : "worse: " + string.Join(", ", pairedWorse.Select(p => $"{p.Variant} ({SeedStatistics.MeanCiCell(p.PairedDifference, p.PairedDifferenceCi95, p.Seeds, signed: true)})")));
            sb.Append(pairedBetter.Count == 0 ? ", none better. " : "; better: " + string.Join(", ", pairedBetter.Select(p => $"{p.Variant} ({SeedStatistics.MeanCiCell(p.PairedDifference, p.PairedDifferenceCi95, p.Seeds, signed: true)})")) + ". ");
            var kl = paired.Where(p => p.PairedKlDifference is not null).ToList();
            if (kl.Count > 0)
            {
                string Gap(FrontierPoint p) => $"{p.Variant} ({SeedStatistics.MeanCiCell(p.PairedKlDifference!.Value, p.PairedKlCi95 ?? 0, p.Seeds, signed: true)})";
                var klWorse = kl.Where(p => p.PairedKlDifference - p.PairedKlCi95 > 0).ToList();
                var klBetter = kl.Where(p => p.PairedKlDifference + p.PairedKlCi95 < 0).ToList();
                var level = kl.Except(klWorse).Except(klBetter).ToList();
                sb.Append($"By the exact KL (the same gap with less eval noise; {kl.Count} of {paired.Count} variants have it): ");
                sb.Append(string.Join("; ", new[]
                {
                    klWorse.Count == 0 ? "" : "worse: " + string.Join(", ", klWorse.Select(Gap)),
                    level.Count == 0 ? "" : "not separable: " + string.Join(", ", level.Select(Gap)),
                    klBetter.Count == 0 ? "" : "better: " + string.Join(", ", klBetter.Select(Gap)),
                }.Where(t => t != "")) + ". ");
            }
        }
        if (gapDrift is not null) sb.Append(gapDrift.Sentence()).Append(' ');
        if (convergence is not null) return sb.Append(convergence.Sentence()).ToString();
        var notConv = points.Where(p => p.FlatTailRuns < p.Seeds).ToList();
        sb.Append(notConv.Count == 0
            ? "Every run's eval curve was flat over its last quarter; under the cosine schedule that alone does not show convergence (pool several run lengths with --from to test it)."
            : $"Not every run's eval curve was flat over its last quarter: {string.Join(", ", notConv.Select(p => $"{p.Variant} {p.FlatTailRuns}/{p.Seeds}"))} — those points are a lower bound on quality.");
        return sb.ToString();
    }

    /// <summary>Merges results of the same task and budget (variants, or seeds of one variant, run in parallel processes
    /// or sessions): the runs are pooled, the points, frontier and verdict recomputed. Different tasks or step counts
    /// are an error; the shared eval sets may differ (they score the final model and change no training bit). The same
    /// (variant, seed) twice is an error unless one copy has more shared eval sets than every other and all are the
    /// same training reproduced (final sampled excess loss within <see cref="ReproducedWithin"/>), as when a run is
    /// repeated to score it on shared eval sets: then that copy is kept.</summary>
    public static MlaFrontierResult Merge(IReadOnlyList<MlaFrontierResult> parts)
    {
        var first = parts[0].Options;
        static MlaFrontierOptions Training(MlaFrontierOptions o, MlaFrontierOptions like) => o with { Variants = like.Variants, Seeds = like.Seeds, FirstSeed = like.FirstSeed, EvalSets = like.EvalSets };
        foreach (var p in parts.Skip(1))
            if (Training(p.Options, first) != first)
                throw new WhaleArgumentException("--from", string.Join(" ", p.Options.Variants), "must come from runs with the same task, model and steps");
        var runs = new List<FrontierRun>();
        foreach (var g in parts.SelectMany(p => p.Runs).GroupBy(r => (r.Variant, r.Seed)))
        {
            var copies = g.OrderByDescending(c => c.EvalSets?.Count ?? 0).ToList();
            static int Sets(FrontierRun r) => r.EvalSets?.Count ?? 0;
            if (copies.Count > 1 && (Sets(copies[0]) == Sets(copies[1]) || copies.Any(c => Math.Abs(c.EvalLoss - copies[0].EvalLoss) > ReproducedWithin)))
                throw new WhaleArgumentException("--from", $"{g.Key.Variant} seed {g.Key.Seed}",
                    $"must name each (variant, seed) run once, or once plus reproductions of it that add shared eval sets (final excess loss within {ReproducedWithin:G2}; these read {string.Join(", ", copies.Select(c => $"{c.EvalLoss:F6} with {Sets(c)} sets"))})");
            runs.Add(copies[0]);
        }
        var points = Summarize(runs, first.SpeedThreshold);
        var seeds = runs.Count == 0 ? first.Seeds : runs.GroupBy(r => r.Variant).Max(g => g.Count());
        var merged = first with
        {
            Variants = parts.SelectMany(p => p.Options.Variants).Distinct().ToArray(),
            Seeds = seeds, FirstSeed = runs.Count == 0 ? first.FirstSeed : runs.Min(r => r.Seed),
            EvalSets = parts.Max(p => p.Options.EvalSets),
        };
        // Partial only while a run some part set out to train is missing from every part: an interrupted process
        // whose remaining seeds another process trained leaves a complete experiment.
        var planned = parts.SelectMany(p => p.Options.Variants.SelectMany(v => Enumerable.Range(p.Options.FirstSeed, p.Options.Seeds).Select(s => (v, s))));
        var present = runs.Select(r => (r.Variant, r.Seed)).ToHashSet();
        return new MlaFrontierResult(merged, runs, points, Verdict(points)) { Partial = planned.Any(k => !present.Contains(k)) };
    }

    /// <summary>Two runs of one (variant, seed) whose final sampled excess loss differs by at most this are the same
    /// training reproduced: repeated runs here differ by ≤ 2.4e-7 (float summation order), 40× below this and far
    /// below the eval noise (≈ 8e-4); a different training (another seed or schedule) differs by ≈ 1e-3.</summary>
    public const double ReproducedWithin = 1e-5;

    /// <summary>Pools results: each run length's parts are merged (<see cref="Merge"/>); with one length that is the
    /// result, with several it is the longest length's, carrying the test of convergence across the lengths
    /// (<see cref="FrontierConvergence"/>) in its verdict.</summary>
    public static MlaFrontierResult Pool(IReadOnlyList<MlaFrontierResult> parts, double tolerance = FrontierConvergence.DefaultTolerance)
    {
        var byLength = parts.GroupBy(p => p.Options.Loop.Steps).OrderBy(g => g.Key).Select(g => Merge(g.ToList())).ToList();
        var noise = FrontierEvalNoise.Analyze(byLength);
        if (byLength.Count == 1) return byLength[0] with { EvalNoise = noise };
        var convergence = FrontierConvergence.Analyze(byLength, tolerance);
        var drift = FrontierGapDrift.Analyze(byLength, tolerance);
        var longest = byLength[^1];
        return longest with { Verdict = Verdict(longest.Points, convergence, drift), Convergence = convergence, GapDrift = drift, EvalNoise = noise };
    }

}
