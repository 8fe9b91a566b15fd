// Quality vs KV cache: tiny language models that differ only in attention (MHA, GQA, MQA, MLA; one
// DeepSeekLM code path, DeepSeek-V2 §2.1 / Appendix D.2's MLA-vs-MHA comparison in miniature), trained on
// multi-query associative recall (MQAR, Arora et al. 2023 "Zoology" §3): N key–value pairs, then Q of the
// keys again; the model must emit each key's value. Recall has to come through the KV cache, so it is the
// task where shrinking the cache should hurt first.
//
//   sequence:  k1 v1 k2 v2 … kN vN | ka va kb vb …      loss/accuracy only where the next token is a queried value
//
// Parameter counts are matched by resizing the dense MLP (intermediate_size) of each model to the MHA model's
// total. Reported: final-eval accuracy and loss per (attention, seed), and KV bytes per token (bf16, all layers).
//
// Every (attention, seed) run can keep a run folder (Lab/Runs/ExperimentRuns): Ctrl-C and --resume, bit-exact.
//
// Shapes: B batch, T sequence (2N + 2Q), V vocab, D hidden.
using TorchSharp;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

using WhaleTech.Attention;
using WhaleTech.Training;
using WhaleTech.Lab.Runs;

namespace WhaleTech.Lab.Mla;

public sealed record MlaQualityOptions
{
    public string[] Attentions { get; init; } = ["mha", "gqa", "mqa", "mla"];
    public int Seeds { get; init; } = 3;
    /// <summary>Steps, batch, learning rate (constant), weight decay and clipping.</summary>
    public TrainingLoop Loop { get; init; } = new() { Steps = 250, BatchSize = 32, LearningRate = 3e-3 };
    public int Pairs { get; init; } = 8;         // N key–value pairs
    public int Queries { get; init; } = 8;       // Q queried keys
    public int Keys { get; init; } = 24;         // key vocabulary
    public int Values { get; init; } = 24;       // value vocabulary
    /// <summary>The shape every attention kind shares.</summary>
    public ModelShape Model { get; init; } = new() { Hidden = 64, Layers = 2, Heads = 4 };
    public int EvalSequences { get; init; } = 256;

    public MlaQualityOptions Validate()
    {
        if (Attentions.Length == 0) throw new WhaleArgumentException("attentions", Attentions, "must name at least one of mha, gqa, mqa, mla");
        foreach (var a in Attentions) Guard.OneOf("attention", a, "mha", "gqa", "mqa", "mla");
        Guard.Positive("seeds", Seeds); Loop.Validate();
        Guard.Positive("pairs", Pairs); Guard.InRange("queries", Queries, 1, Pairs);
        Guard.InRange("keys", Keys, Pairs, 10_000); Guard.Positive("values", Values);
        Model.Validate(); Guard.Divides("heads", Model.Heads, "hidden", Model.Hidden);
        Guard.Positive("eval sequences", EvalSequences);
        return this;
    }
}

public sealed record MlaQualityRun(string Attention, int Seed, long Parameters, long KvElementsPerToken, double KvBytesPerTokenBf16, double FinalTrainLoss, double EvalLoss, double EvalAccuracy);
public sealed record MlaQualitySummary(string Attention, long Parameters, double KvBytesPerTokenBf16, double MeanAccuracy, double StdAccuracy, double MeanEvalLoss);
public sealed record MlaQualityResult(MlaQualityOptions Options, IReadOnlyList<MlaQualityRun> Runs, IReadOnlyList<MlaQualitySummary> Summary)
{
    /// <summary>True when Ctrl-C stopped the experiment: Runs and Summary cover the finished runs only.</summary>
    public bool Partial { get; init; }
}

public static class MlaQuality
{
    /// <summary>The tiny config of <paramref name="attention"/>, MLP resized so all kinds have ≈ the MHA model's parameters.</summary>
    public static ModelConfig Config(MlaQualityOptions o, string attention)
    {
        var m = o.Model;
        int head = m.Hidden / m.Heads;
        ModelConfig Make(string kind, int intermediate) => new ModelConfig
        {
            VocabSize = o.Keys + o.Values, HiddenSize = m.Hidden, IntermediateSize = intermediate, NumHiddenLayers = m.Layers,
            NumAttentionHeads = m.Heads, NumKeyValueHeads = kind == "gqa" ? Math.Max(1, m.Heads / 2) : m.Heads,
            KvLoraRank = m.Hidden / 2, QLoraRank = null, QkNopeHeadDim = head, QkRopeHeadDim = Math.Max(2, head / 2 / 2 * 2), VHeadDim = head,
            Attention = kind, MaxPositionEmbeddings = 2 * (o.Pairs + o.Queries), HeadDim = kind == "mla" ? null : head,
        }.Validate();
        return ParameterMatching.MatchMlp(i => Make(attention, i), i => Make("mha", i), m.Hidden, m.Layers);
    }

    /// <summary>A batch of MQAR sequences: ids [B, T] and the target mask [B, T] (true where the next token is a queried value).</summary>
    public static (Tensor Ids, Tensor Targets, Tensor Mask) Batch(MlaQualityOptions o, int batch, Random rng)
    {
        int T = 2 * (o.Pairs + o.Queries);
        var ids = new long[batch * T];
        var mask = new bool[batch * T];
        for (int b = 0; b < batch; b++)
        {
            var keys = Enumerable.Range(0, o.Keys).OrderBy(_ => rng.Next()).Take(o.Pairs).ToArray();
            var values = keys.Select(_ => rng.Next(o.Values)).ToArray();
            int p = b * T;
            for (int i = 0; i < o.Pairs; i++) { ids[p++] = keys[i]; ids[p++] = o.Keys + values[i]; }
            foreach (int i in Enumerable.Range(0, o.Pairs).OrderBy(_ => rng.Next()).Take(o.Queries))
            {
                mask[p] = true;                                                   // predicting position p+1 (the value) from the key at p
                ids[p++] = keys[i]; ids[p++] = o.Keys + values[i];
            }
        }
        var idsT = torch.tensor(ids).view(batch, T);
        var targets = torch.cat([idsT.narrow(1, 1, T - 1), torch.zeros(batch, 1, dtype: ScalarType.Int64)], dim: 1); // next token [B, T]
        return (idsT, targets, torch.tensor(mask).view(batch, T));
    }

    static (Tensor Loss, Tensor Correct) LossAndCorrect(DeepSeekLM model, Tensor ids, Tensor targets, Tensor mask)
    {
        var logits = model.forward(ids);                                          // [B, T, V]
        var picked = logits[mask];                                                // [M, V] queried positions
        var target = targets[mask];                                               // [M]
        var loss = nn.functional.cross_entropy(picked.to_type(ScalarType.Float32), target);
        return (loss, picked.argmax(-1).eq(target).to_type(ScalarType.Float32).mean());
    }

    /// <summary>Trains every (attention, seed) and evaluates on fresh sequences. With <paramref name="runs"/> (Lab/Runs) every
    /// run keeps a run folder, a resume skips the finished ones, and after Ctrl-C the result covers the finished runs
    /// and is marked Partial.</summary>
    public static MlaQualityResult Run(MlaQualityOptions options, Device device, Action<string>? log = null, ExperimentRuns? runs = null)
    {
        var o = options.Validate();
        Backend.Initialize();
        runs?.Begin("mla-quality", o);
        var results = new List<MlaQualityRun>();
        foreach (var (attention, seed) in o.Attentions.SelectMany(a => Enumerable.Range(0, o.Seeds).Select(s => (a, s))))
        {
            if (runs?.StopRequested == true) break;
            using var run = runs?.Open($"{attention} seed {seed}");
            var r = RunOne(o, attention, seed, device, run);
            if (r is null) break;
            results.Add(r);
            log?.Invoke($"{attention} seed {seed}: params {r.Parameters:N0}, KV {r.KvBytesPerTokenBf16} B/token, train loss {r.FinalTrainLoss:F3}, eval loss {r.EvalLoss:F3}, accuracy {r.EvalAccuracy:P1}");
        }
        var summary = results.GroupBy(r => r.Attention).Select(g =>
        {
            double mean = g.Average(r => r.EvalAccuracy);
            double std = Math.Sqrt(g.Sum(r => (r.EvalAccuracy - mean) * (r.EvalAccuracy - mean)) / Math.Max(1, g.Count() - 1));
            return new MlaQualitySummary(g.Key, g.First().Parameters, g.First().KvBytesPerTokenBf16, mean, std, g.Average(r => r.EvalLoss));
        }).ToList();
        return new MlaQualityResult(o, results, summary) { Partial = runs?.Interrupted == true };
    }

    /// <summary>One (attention, seed) run; null when Ctrl-C stopped it (after its current step, checkpoint written).</summary>
    static MlaQualityRun? RunOne(MlaQualityOptions o, string attention, int seed, Device device, ExperimentRun? run)
    {
        if (run?.Finished<MlaQualityRun>() is { } done) return done;
        var cfg = Config(o, attention);
        torch.manual_seed(1000 + seed);
        using var model = new DeepSeekLM(cfg);
        model.to(device);
        model.train();
        using var opt = new AdamWOptimizer(model.parameters(), o.Loop.LearningRate, weightDecay: o.Loop.WeightDecay);   // 0.01 = torch.optim.AdamW's default
        var stepper = new OptimizerStepper(opt, model.parameters(), maxGradNorm: o.Loop.GradClip, maxNonFiniteInRow: 1)
            { Warn = w => throw new WhaleException($"{attention} seed {seed}: {w}") };
        var rng = new Random(seed);
        int start = run?.Start(model, opt)?.Step ?? 0;
        for (int i = 0; i < start; i++)                                      // resume: the data stream replays to where the run stopped
        {
            using var scope = torch.NewDisposeScope();
            Batch(o, o.Loop.BatchSize, rng);
        }
        double lastLoss = double.NaN;
        for (int step = start; step < o.Loop.Steps; step++)
        {
            using var scope = torch.NewDisposeScope();
            var (ids, targets, mask) = Batch(o, o.Loop.BatchSize, rng);
            var outcome = stepper.Run(step, () => LossAndCorrect(model, ids.to(device), targets.to(device), mask.to(device)).Loss);
            lastLoss = outcome.Loss;
            run?.Log(step + 1, new Dictionary<string, double> { ["loss"] = outcome.Loss, ["grad_norm"] = outcome.GradNorm });
            if (run?.AfterStep(step + 1, o.Loop.Steps, model, opt, step + 1) == true) return null;
        }
        model.eval();
        double evalLoss, evalAcc;
        using (var scope = torch.NewDisposeScope())
        using (torch.no_grad())
        {
            var (ids, targets, mask) = Batch(o, o.EvalSequences, new Random(10_000 + seed));
            var (loss, acc) = LossAndCorrect(model, ids.to(device), targets.to(device), mask.to(device));
            evalLoss = loss.item<float>(); evalAcc = acc.item<float>();
        }
        var shape = KvShape.From(cfg, cfg.AttentionVariant == StandardAttentionVariant.Gqa ? cfg.NumKeyValueHeads : null);
        long kv = KvAccounting.ElementsPerToken(shape, KvAccounting.LayoutOf(cfg));
        var result = new MlaQualityRun(attention, seed, model.ParameterCount(), kv, kv * 2.0, lastLoss, evalLoss, evalAcc);
        run?.Finish(result);
        return result;
    }

    /// <summary>Accuracy (mean ± std over seeds) against KV bytes per token, as a PNG.</summary>
    public static byte[] Plot(MlaQualityResult result, int width = 720, int height = 480)
    {
        var plt = new ScottPlot.Plot();
        foreach (var s in result.Summary)
        {
            var points = plt.Add.Scatter(new[] { s.KvBytesPerTokenBf16 }, new[] { s.MeanAccuracy });
            points.LegendText = $"{s.Attention.ToUpperInvariant()} ({s.Parameters:N0} params)";
            points.MarkerSize = 10;
            var bar = plt.Add.ErrorBar(new[] { s.KvBytesPerTokenBf16 }, new[] { s.MeanAccuracy }, new[] { s.StdAccuracy });
            bar.Color = points.Color;
        }
        var o = result.Options;
        plt.Title($"MQAR recall ({o.Pairs} pairs, {o.Queries} queries), {o.Seeds} seeds × {o.Loop.Steps} steps" + (result.Partial ? " (partial)" : ""));
        plt.XLabel("KV cache bytes per token (bf16, all layers)");
        plt.YLabel("eval accuracy on queried values");
        plt.ShowLegend(ScottPlot.Edge.Right);                                // outside the data area
        return plt.GetImageBytes(width, height, ScottPlot.ImageFormat.Png);
    }
}
