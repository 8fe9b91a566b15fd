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
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using MathNet.Numerics.Distributions;
using MathNet.Numerics.Statistics;
using TorchSharp;
using WhaleTech.IO;
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
    {
        o.Validate();
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
        for (int step = 0; step < o.Loop.Steps; step++)
        {
            using var scope = torch.NewDisposeScope();
            var (x, y) = train.Next(device);
            var m = trainer.TrainStep(x, y);
            if (log is not null && (step + 1) % Math.Max(1, o.Loop.Steps / 4) == 0)
                log($"  {method.Name} seed {seed}: step {m.Step} loss {m.Loss:F3} MaxVio_batch {history.MaxVioBatch().LastOrDefault():F2}");
        }
        var (valLoss, globalLoads) = Evaluate(model, layers, evalTokens, o, device);
        var perLayer = globalLoads.Select(l => LoadMetrics.MaxVio(l)).ToArray();
        return new MoeRunResult(method.Name, seed, valLoss, perLayer.Average(), perLayer,
            globalLoads.Sum(l => LoadMetrics.DeadExperts(l)), globalLoads.Average(l => LoadMetrics.LoadEntropy(l)),
            history.MaxVioBatch(), watch.Elapsed.TotalSeconds) { History = history };
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

    /// <summary>Mean and half-width of the 95% Student-t confidence interval (0 for one sample).</summary>
    public static (double Mean, double HalfWidth) MeanCi95(IReadOnlyList<double> values)
    {
        double mean = values.Mean();
        if (values.Count < 2) return (mean, 0);
        double t = StudentT.InvCDF(0, 1, values.Count - 1, 0.975);
        return (mean, t * values.StandardDeviation() / Math.Sqrt(values.Count));
    }

    public static IReadOnlyList<MoeMethodSummary> Summarize(IEnumerable<MoeRunResult> runs) => runs
        .GroupBy(r => r.Method)
        .Select(g =>
        {
            var (loss, lossCi) = MeanCi95(g.Select(r => r.ValLoss).ToArray());
            var (vio, vioCi) = MeanCi95(g.Select(r => r.MaxVioGlobal).ToArray());
            return new MoeMethodSummary(g.Key, loss, lossCi, vio, vioCi, g.Count());
        })
        .ToList();

    /// <summary>Runs every method × seed and writes results.json, results.md, dilemma.png, maxvio.png and heatmaps to <paramref name="outDir"/>.</summary>
    public static IReadOnlyList<MoeMethodSummary> RunAll(IReadOnlyList<BalanceMethod> methods, MoeExperimentOptions o, Device device, string outDir, Action<string>? log = null)
    {
        o.Validate();
        var runs = new List<MoeRunResult>();
        foreach (var method in methods)
            for (int seed = 0; seed < o.Seeds; seed++)
            {
                var r = Run(method, seed, o, device, log);
                log?.Invoke($"{r.Method} seed {seed}: val loss {r.ValLoss:F4}, MaxVio_global {r.MaxVioGlobal:F3} ({r.Seconds:F0} s)");
                runs.Add(r);
            }
        var summary = Summarize(runs);
        Write(outDir, o, runs, summary, device);
        return summary;
    }

    static void Write(string outDir, MoeExperimentOptions o, List<MoeRunResult> runs, IReadOnlyList<MoeMethodSummary> summary, Device device)
    {
        var machine = MachineInfo.Collect(device);
        var json = JsonSerializer.Serialize(new { machine, options = o, summary, runs }, new JsonSerializerOptions { WriteIndented = true });
        AtomicFile.WriteAllText(Path.Combine(outDir, "results.json"), json);
        LoadPlots.Dilemma(summary.Select(s => (s.Method, s.ValLoss, s.ValLossCi, s.MaxVio, s.MaxVioCi)).ToList(),
            Path.Combine(outDir, "dilemma.png"), "Load balance vs. model quality (mean ± 95% CI over seeds)");
        var firstSeed = runs.GroupBy(r => r.Method).Select(g => g.First()).ToList();
        LoadPlots.MaxVioCurves(firstSeed.Select(r => (r.Method, r.MaxVioBatch)).ToList(), Path.Combine(outDir, "maxvio.png"),
            "MaxVio_batch during training (first seed, mean over layers)", window: Math.Max(1, Math.Min(100, o.Loop.Steps / 10)));
        foreach (var r in firstSeed)
            for (int l = 0; l < (r.History?.Layers ?? 0); l++)
                LoadPlots.Heatmap(r.History!, l, Path.Combine(outDir, $"heatmap-{Slug(r.Method)}-layer{l}.png"), $"{r.Method}: tokens per expert, MoE layer {l}");
        var md = new StringBuilder();
        md.AppendLine("# Auxiliary-loss-free balancing vs. auxiliary losses");
        md.AppendLine();
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
