// The balance-vs-quality experiment of auxiliary-loss-free balancing (Wang et al. 2024, Fig. 1 and Table 2;
// DeepSeek-V3 §2.1.2): a small DeepSeekMoE language model is trained on a corpus with skewed token statistics
// (WhaleTech's synthetic character corpus: spaces, digits and a few letters dominate) with
//   none            no balancing at all
//   aux α           the expert-level auxiliary loss α · Σ_i f_i P_i (Switch form), α ∈ {1e-2, 1e-3, 1e-4}
//   loss-free       no loss; the bias update b_i += γ · sign(mean load − load_i) after every step (γ = 1e-3)
// over several seeds. For every run it reports the validation loss and MaxVio_global (loads summed over the
// whole evaluation set), then the mean over seeds with a 95% Student-t confidence interval, and draws the
// "dilemma" plot (MaxVio_global against loss), MaxVio_batch curves and expert × step heatmaps.
//
// The defaults are CPU-sized (a few minutes on two cores); `whale moe experiment --help` lists the knobs.
// Every (method, seed) run can keep a run folder (Lab/Runs/ExperimentRuns: metrics, checkpoints, result record),
// so Ctrl-C stops after the current step with a partial summary and --resume continues bit-exactly.
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using MathNet.Numerics.Statistics;
using TorchSharp;
using WhaleTech.IO;
using WhaleTech.Lab.Runs;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Training;
using static TorchSharp.torch;
using WhaleTech.Core;

using WhaleTech.Moe;

namespace WhaleTech.Lab.Moe;

/// <summary>One balancing method of the experiment.</summary>
public sealed record BalanceMethod(string Name, AuxLossOptions Aux, BiasUpdateRule Rule, double Gamma)
{
    /// <summary>From this fraction of the run on, γ becomes <see cref="LateGamma"/> (1 = never: constant γ).</summary>
    public double LateFrom { get; init; } = 1.0;
    /// <summary>γ of the late phase (0 = bias frozen, as in DeepSeek-V3's last 500B tokens).</summary>
    public double LateGamma { get; init; }

    /// <summary>The γ schedule of a run of <paramref name="steps"/> optimizer steps.</summary>
    public GammaSchedule Schedule(int steps) => LateFrom >= 1
        ? GammaSchedule.Constant(Gamma)
        : GammaSchedule.TwoPhase(Gamma, (long)Math.Round(LateFrom * steps), LateGamma);

    public static BalanceMethod None { get; } = new("none", AuxLossOptions.None, BiasUpdateRule.None, 0);
    public static BalanceMethod AuxLoss(double alpha) => new($"aux α={alpha:0.#e+0}", new AuxLossOptions(AuxLossKind.Switch, alpha), BiasUpdateRule.None, 0);
    public static BalanceMethod LossFree(double gamma, BiasUpdateRule rule = BiasUpdateRule.Sign) => new($"loss-free γ={gamma:0.#e+0}", AuxLossOptions.None, rule, gamma);

    /// <summary>Loss-free with γ for the first <paramref name="lateFrom"/> of the run, then <paramref name="lateGamma"/>.</summary>
    public static BalanceMethod LossFree(double gamma, BiasUpdateRule rule, double lateFrom, double lateGamma) => lateFrom >= 1
        ? LossFree(gamma, rule)
        : new BalanceMethod($"loss-free γ={gamma:0.#e+0}→{lateGamma:0.#e+0}", AuxLossOptions.None, rule, gamma) { LateFrom = lateFrom, LateGamma = lateGamma };

    /// <summary>The methods of Wang et al.'s comparison: none, aux α ∈ {1e-2, 1e-3, 1e-4}, loss-free sign γ.</summary>
    public static IReadOnlyList<BalanceMethod> Standard(double gamma = 1e-3) =>
        [None, AuxLoss(1e-2), AuxLoss(1e-3), AuxLoss(1e-4), LossFree(gamma)];
}

public sealed record MoeExperimentOptions
{
    public int Seeds { get; init; } = 3;
    /// <summary>Steps, batch and peak learning rate (warm-up min(20, steps/10), cosine to lr/10).</summary>
    public TrainingLoop Loop { get; init; } = new() { Steps = 200, BatchSize = 8, LearningRate = 3e-3 };
    public int SequenceLength { get; init; } = 32;
    /// <summary>The MLA model's shape; every layer is DeepSeekMoE.</summary>
    public ModelShape Model { get; init; } = new() { Hidden = 32, Layers = 2, Heads = 4 };
    public int Experts { get; init; } = 8;
    public int TopK { get; init; } = 2;
    public int SharedExperts { get; init; } = 1;
    public int ExpertWidth { get; init; } = 32;
    public double Gamma { get; init; } = 1e-3;
    public int EvalBatches { get; init; } = 16;
    public int CorpusCharacters { get; init; } = 200_000;
    public MoeDispatch Dispatch { get; init; } = MoeDispatch.Sorted;

    public MoeExperimentOptions Validate()
    {
        Guard.Positive("seeds", Seeds);
        Loop.Validate();
        Guard.Positive("seq_len", SequenceLength);
        Model.Validate();
        Guard.InRange("experts", Experts, 2, 1024);
        Guard.InRange("top_k", TopK, 1, Experts);
        Guard.NonNegative("shared_experts", SharedExperts);
        Guard.Positive("expert_width", ExpertWidth);
        Guard.NonNegative("gamma", Gamma);
        Guard.Positive("eval_batches", EvalBatches);
        if (Model.Hidden % Model.Heads != 0)
            throw new WhaleArgumentException("hidden", Model.Hidden, $"must be a multiple of {Model.Heads} ({Model.Heads} attention heads)");
        return this;
    }

    /// <summary>The model: Tiny MLA, every layer DeepSeekMoE (sigmoid router, noaux_tc, normalized top-K).</summary>
    public ModelConfig ModelConfig(int vocab) => Model.Tiny("mla", vocab) with
    {
        NRoutedExperts = Experts, NumExpertsPerTok = TopK, NSharedExperts = SharedExperts, MoeIntermediateSize = ExpertWidth,
        NGroup = 1, TopkGroup = 1, ScoringFunc = "sigmoid", TopkMethod = "noaux_tc", NormTopkProb = true, FirstKDenseReplace = 0,
    };
}

public sealed record MoeRunResult(
    [property: JsonPropertyName("method")] string Method,
    [property: JsonPropertyName("seed")] int Seed,
    [property: JsonPropertyName("val_loss")] double ValLoss,
    [property: JsonPropertyName("maxvio_global")] double MaxVioGlobal,
    [property: JsonPropertyName("maxvio_global_per_layer")] double[] MaxVioGlobalPerLayer,
    [property: JsonPropertyName("dead_experts")] int DeadExperts,
    [property: JsonPropertyName("load_entropy")] double LoadEntropy,
    [property: JsonPropertyName("maxvio_batch")] double[] MaxVioBatch,
    [property: JsonPropertyName("seconds")] double Seconds)
{
    [JsonIgnore] public LoadHistory? History { get; init; }
}

public sealed record MoeMethodSummary(
    [property: JsonPropertyName("method")] string Method,
    [property: JsonPropertyName("val_loss_mean")] double ValLoss,
    [property: JsonPropertyName("val_loss_ci95")] double ValLossCi,
    [property: JsonPropertyName("maxvio_global_mean")] double MaxVio,
    [property: JsonPropertyName("maxvio_global_ci95")] double MaxVioCi,
    [property: JsonPropertyName("seeds")] int Seeds);

public static class MoeExperiment
{
    /// <summary>Trains one run and measures it.</summary>
    public static MoeRunResult Run(BalanceMethod method, int seed, MoeExperimentOptions o, Device device, Action<string>? log = null)
        => Run(method, seed, o, device, log, run: null)!;

    /// <summary>Trains one run in its run folder (Lab/Runs): a finished run is read back, an interrupted one continues
    /// from its checkpoint; returns null when Ctrl-C stopped it (after its current step, checkpoint written).</summary>
    public static MoeRunResult? Run(BalanceMethod method, int seed, MoeExperimentOptions o, Device device, Action<string>? log, ExperimentRun? run)
    {
        o.Validate();
        if (run?.Finished<MoeStoredRun>() is { } done) return done.ToResult();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var tokenizer = new CharTokenizer();
        var trainTokens = tokenizer.Encode(new SyntheticCorpus(o.CorpusCharacters, seed: 1).Text);
        var evalTokens = tokenizer.Encode(new SyntheticCorpus(Math.Max(o.CorpusCharacters / 10, o.SequenceLength * 4), seed: 2).Text);
        torch.manual_seed(seed);
        using var model = new DeepSeekLM(o.ModelConfig(tokenizer.VocabSize), moe: DeepSeekMoE.Factory);
        model.to(device);
        var layers = MoeLayers.Find(model);
        MoeLayers.Configure(layers, o.Dispatch, method.Aux);
        var balancer = new LoadBalancer(layers, method.Rule, method.Schedule(o.Loop.Steps));
        var history = new LoadHistory();
        var trainer = new LmTrainer(model, new TrainOptions(o.Loop)
        {
            SequenceLength = o.SequenceLength, MinLearningRate = o.Loop.LearningRate / 10, WarmupSteps = Math.Min(20, o.Loop.Steps / 10),
            EvalEvery = o.Loop.Steps, Seed = seed,
        });
        // The two MoE hooks of the trainer: aux losses after the forward, the bias update after optimizer.step().
        trainer.AuxiliaryLosses.Add(() => MoeLayers.TakeAuxLoss(layers));
        trainer.Stepper.AttachBalancer(balancer, history.Add);
        var train = new TokenWindowStream(trainTokens, o.Loop.BatchSize, o.SequenceLength, seed);
        if (run?.Start(model, trainer.Optimizer) is { } resumed)
        {
            var state = RunCheckpoint.StateAs<MoeLoopState>(resumed) ?? throw new WhaleFormatException(run.Dir!, "checkpoint without the balancer's state");
            trainer.RestoreStep(resumed.Step);
            train.Skip(resumed.DataPosition - train.BatchesDrawn);
            balancer.RestoreStep(state.BalancerStep);
            foreach (var l in state.Loads) history.Add(l);
        }
        while (trainer.Step < o.Loop.Steps)
        {
            StepMetrics m;
            using (var scope = torch.NewDisposeScope())
            {
                var (x, y) = train.Next(device);
                m = trainer.TrainStep(x, y);
            }
            double vio = history.Steps.Count == 0 ? 0 : history.Steps[^1].Counts.Average(c => LoadMetrics.MaxVio(c));   // = MaxVioBatch()[^1]
            if (log is not null && m.Step % Math.Max(1, o.Loop.Steps / 4) == 0)
                log($"  {method.Name} seed {seed}: step {m.Step} loss {m.Loss:F3} MaxVio_batch {vio:F2}");
            run?.Log(m.Step, new Dictionary<string, double> { ["loss"] = m.Loss, ["learning_rate"] = m.LearningRate, ["grad_norm"] = m.GradNorm, ["skipped"] = m.Skipped ? 1 : 0, ["maxvio_batch"] = vio });
            if (run?.AfterStep(m.Step, o.Loop.Steps, model, trainer.Optimizer, train.BatchesDrawn, () => new MoeLoopState(balancer.Step, history.Steps.ToList())) == true)
                return null;
        }
        var (valLoss, globalLoads) = Evaluate(model, layers, evalTokens, o, device);
        var perLayer = globalLoads.Select(l => LoadMetrics.MaxVio(l)).ToArray();
        var result = new MoeRunResult(method.Name, seed, valLoss, perLayer.Average(), perLayer,
            globalLoads.Sum(l => LoadMetrics.DeadExperts(l)), globalLoads.Average(l => LoadMetrics.LoadEntropy(l)),
            history.MaxVioBatch(), watch.Elapsed.TotalSeconds) { History = history };
        run?.Finish(new MoeStoredRun(result, history.Steps.ToList()));
        return result;
    }

    /// <summary>What a MoE run's checkpoint keeps besides weights and optimizer: the balancer's step and the loads so far.</summary>
    sealed record MoeLoopState(long BalancerStep, List<StepLoad> Loads);

    /// <summary>A finished run's record: the result and its per-step loads (for the heatmaps of a resumed experiment).</summary>
    sealed record MoeStoredRun(MoeRunResult Result, List<StepLoad> Loads)
    {
        public MoeRunResult ToResult()
        {
            var h = new LoadHistory();
            foreach (var l in Loads) h.Add(l);
            return Result with { History = h };
        }
    }

    /// <summary>Validation loss and per-layer expert loads summed over the whole evaluation set (eval mode: no bias updates).</summary>
    public static (double Loss, long[][] Loads) Evaluate(DeepSeekLM model, IReadOnlyList<DeepSeekMoE> layers, int[] evalTokens, MoeExperimentOptions o, Device device)
    {
        using var noGrad = torch.no_grad();
        model.eval();
        var stream = new TokenWindowStream(evalTokens, o.Loop.BatchSize, o.SequenceLength, seed: 12345);   // same windows for every run
        var loads = layers.Select(l => new long[l.NumExperts]).ToArray();
        double sum = 0;
        for (int i = 0; i < o.EvalBatches; i++)
        {
            using var scope = torch.NewDisposeScope();
            var (x, y) = stream.Next(device);
            sum += Losses.CrossEntropy(model.forward(x), y).item<float>();
            for (int l = 0; l < layers.Count; l++)
            {
                var c = layers[l].LastCounts()!;
                for (int e = 0; e < c.Length; e++) loads[l][e] += c[e];
            }
        }
        model.train();
        return (sum / o.EvalBatches, loads);
    }


    public static IReadOnlyList<MoeMethodSummary> Summarize(IEnumerable<MoeRunResult> runs) => runs
        .GroupBy(r => r.Method)
        .Select(g =>
        {
            var (loss, lossCi) = SeedStatistics.MeanCi95(g.Select(r => r.ValLoss).ToArray());
            var (vio, vioCi) = SeedStatistics.MeanCi95(g.Select(r => r.MaxVioGlobal).ToArray());
            return new MoeMethodSummary(g.Key, loss, lossCi, vio, vioCi, g.Count());
        })
        .ToList();

    /// <summary>Runs every method × seed and writes results.json, results.md, dilemma.png, maxvio.png and heatmaps to <paramref name="outDir"/>.
    /// With <paramref name="runs"/> (Lab/Runs): every run keeps its folder under <paramref name="outDir"/>/runs, a resume
    /// skips the finished ones, and after Ctrl-C the files summarize the finished runs and say they are partial.</summary>
    public static IReadOnlyList<MoeMethodSummary> RunAll(IReadOnlyList<BalanceMethod> methods, MoeExperimentOptions o, Device device, string outDir, Action<string>? log = null,
        ExperimentRuns? runs = null)
    {
        o.Validate();
        runs?.Begin("moe-experiment", new { options = o, methods });
        var results = new List<MoeRunResult>();
        foreach (var (method, seed) in methods.SelectMany(m => Enumerable.Range(0, o.Seeds).Select(s => (m, s))))
        {
            if (runs?.StopRequested == true) break;
            using var run = runs?.Open($"{method.Name} seed {seed}");
            var r = Run(method, seed, o, device, log, run);
            if (r is null) break;
            log?.Invoke($"{r.Method} seed {seed}: val loss {r.ValLoss:F4}, MaxVio_global {r.MaxVioGlobal:F3} ({r.Seconds:F0} s)");
            results.Add(r);
        }
        var summary = Summarize(results);
        Write(outDir, o, results, summary, device, runs?.Interrupted == true ? methods.Count * o.Seeds : null);
        return summary;
    }

    /// <param name="plannedIfPartial">The number of runs planned, when only some finished (Ctrl-C); null for a complete experiment.</param>
    static void Write(string outDir, MoeExperimentOptions o, List<MoeRunResult> runs, IReadOnlyList<MoeMethodSummary> summary, Device device, int? plannedIfPartial)
    {
        var machine = MachineInfo.Collect(device);
        bool partial = plannedIfPartial is not null;
        var json = JsonSerializer.Serialize(new { machine, options = o, partial, summary, runs }, new JsonSerializerOptions { WriteIndented = true });
        AtomicFile.WriteAllText(Path.Combine(outDir, "results.json"), json);
        if (runs.Count > 0)
        {
            LoadPlots.Dilemma(summary.Select(s => (s.Method, s.ValLoss, s.ValLossCi, s.MaxVio, s.MaxVioCi)).ToList(),
                Path.Combine(outDir, "dilemma.png"), "Load balance vs. model quality (mean ± 95% CI over seeds)");
            var firstSeed = runs.GroupBy(r => r.Method).Select(g => g.First()).ToList();
            LoadPlots.MaxVioCurves(firstSeed.Select(r => (r.Method, r.MaxVioBatch)).ToList(), Path.Combine(outDir, "maxvio.png"),
                "MaxVio_batch during training (first seed, mean over layers)", window: Math.Max(1, Math.Min(100, o.Loop.Steps / 10)));
            foreach (var r in firstSeed)
                for (int l = 0; l < (r.History?.Layers ?? 0); l++)
                    LoadPlots.Heatmap(r.History!, l, Path.Combine(outDir, $"heatmap-{Slug(r.Method)}-layer{l}.png"), $"{r.Method}: tokens per expert, MoE layer {l}");
        }
        var md = new StringBuilder();
        md.AppendLine("# Auxiliary-loss-free balancing vs. auxiliary losses");
        md.AppendLine();
        if (partial)
        {
            md.AppendLine($"**Partial:** interrupted after {runs.Count} of {plannedIfPartial} runs; continue with the same command and `--resume`.");
            md.AppendLine();
        }
        md.AppendLine($"Machine: {machine}");
        md.AppendLine();
        md.AppendLine($"Model: {o.Model.Layers} MoE layers, D={o.Model.Hidden}, {o.Experts} routed experts (top-{o.TopK}, width {o.ExpertWidth}) + {o.SharedExperts} shared; " +
                      $"{o.Loop.Steps} steps of {o.Loop.BatchSize}×{o.SequenceLength} tokens; {o.Seeds} seeds; eval {o.EvalBatches} batches.");
        md.AppendLine();
        md.AppendLine("| method | val loss (mean ± 95% CI) | MaxVio_global (mean ± 95% CI) |");
        md.AppendLine("|---|---|---|");
        foreach (var s in summary)
            md.AppendLine($"| {s.Method} | {s.ValLoss:F4} ± {s.ValLossCi:F4} | {s.MaxVio:F3} ± {s.MaxVioCi:F3} |");
        md.AppendLine();
        md.AppendLine("![dilemma](dilemma.png)");
        md.AppendLine();
        md.AppendLine("![MaxVio_batch](maxvio.png)");
        AtomicFile.WriteAllText(Path.Combine(outDir, "results.md"), md.ToString());
    }

    static string Slug(string s) => new(s.Select(c => char.IsAsciiLetterOrDigit(c) ? c : '-').ToArray());
}
