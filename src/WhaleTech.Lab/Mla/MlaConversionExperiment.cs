// Conversion then fine-tune vs training MLA from scratch, at equal KV bytes per token, on the frontier's MQAR task.
//
//   TransMLA (GQA/MQA → MLA, same cache): train the source; convert with the linearized latent norm (exact for MQA,
//   RoPE-residual gap for GQA) and evaluate; convert with the RMS norm (the fine-tunable form) and evaluate; fine-tune
//   it; compare with the source fine-tuned for the same steps (does MLA's extra freedom buy quality at this cache?)
//   and with MLA of the same (Dc, Dr) trained from scratch for the fine-tune steps.
//   MHA2MLA (MHA → MLA, smaller cache): every partial-RoPE strategy × SVD factorization right after conversion
//   (2-norm measured on a calibration batch, as MHA2MLA, and its weight-space proxy); a rank sweep; fine-tunes of
//   each strategy (joint SVD) and of the 2-norm/separate pair; MLA from scratch for the same steps.
// Every number is a mean with a 95 % Student-t interval over seeds. Loss = excess loss (Bayes 0, MlaFrontier).
// With a run folder (Lab/Runs/ExperimentRuns) every training is a run of its own: it checkpoints every N steps and
// keeps its final weights (model.safetensors) beside its curve, so --resume reads finished trainings back, rebuilds
// the conversions from the restored sources and continues the interrupted training; Ctrl-C stops after the current
// step, and the partial result covers the finished seeds.
using System.Text;
using TorchSharp;
using WhaleTech.Lab.Runs;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Lab.Mla;

public sealed record MlaConversionExperimentOptions
{
    public MlaFrontierOptions Task { get; init; } = new();
    public int Seeds { get; init; } = 3;
    public int SourceSteps { get; init; } = 2000;
    public int FineTuneSteps { get; init; } = 500;
    public double FineTuneLearningRate { get; init; } = 1e-3;
    /// <summary>MHA2MLA targets: (kv_lora_rank, rope dims); KV elements/layer = Dc + Dr.</summary>
    public MlaTarget[] MhaTargets { get; init; } = [new(12, 4)];
    public int[] RankSweep { get; init; } = [4, 8, 12, 20, 28, 44, 60];
}

public sealed record MlaTarget(int Rank, int Rope);
public sealed record ConversionRow(string Experiment, string Case, int Seed, long KvElementsPerToken, double EvalLoss, double EvalAccuracy, double? MaxLogitDiff, IReadOnlyList<CurvePoint>? Curve);
public sealed record ConversionSummary(string Experiment, string Case, long KvElementsPerToken, int Seeds, double MeanLoss, double LossCi95, double MeanAccuracy, double AccuracyCi95, double? MeanMaxLogitDiff);
public sealed record MlaConversionExperimentResult(MlaConversionExperimentOptions Options, IReadOnlyList<ConversionRow> Rows, IReadOnlyList<ConversionSummary> Summary)
{
    /// <summary>True when Ctrl-C stopped the study: Rows and Summary cover the finished seeds only.</summary>
    public bool Partial { get; init; }
}

public static class MlaConversionExperiment
{
    /// <summary>Thrown inside a seed when Ctrl-C stopped one of its trainings (its checkpoint is written).</summary>
    sealed class Stopped : Exception;

    public static MlaConversionExperimentResult Run(MlaConversionExperimentOptions options, Device device, Action<string>? log = null, ExperimentRuns? runs = null)
    {
        var o = options;
        var t = o.Task.Validate();
        Backend.Initialize();
        runs?.Begin("mla-convert-study", o);
        var rows = new List<ConversionRow>();
        void Add(string exp, string name, int seed, DeepSeekLM m, double? diff = null, IReadOnlyList<CurvePoint>? curve = null)
        {
            var (l, a) = MlaFrontier.Evaluate(m, t, seed, device);
            rows.Add(new ConversionRow(exp, name, seed, MlaFrontier.KvElements(m.Config), l, a, diff, curve));
            log?.Invoke($"{exp} | {name} | seed {seed}: loss {l:F4}, accuracy {a:P1}{(diff is null ? "" : $", max |Δlogit| {diff:G3}")}");
        }
        // One training of the study, as a run of its own when there is a run folder: a finished one is read back (curve
        // and final weights), an interrupted one continues from its checkpoint, Ctrl-C throws Stopped.
        IReadOnlyList<CurvePoint> TrainRun(string name, DeepSeekLM m, int steps, double lr, int dataSeed, int evalSeed)
        {
            using var run = runs?.Open(name);
            string? weights = run?.Dir is { } dir ? Path.Combine(dir, "model.safetensors") : null;
            if (run?.Finished<List<CurvePoint>>() is { } done)
            {
                IO.StateDict.Load(m, weights!);
                m.eval();
                return done;
            }
            var curve = MlaFrontier.Train(m, t, steps, lr, dataSeed, evalSeed, device, name, run) ?? throw new Stopped();
            if (weights is not null) IO.StateDict.Save(m, weights);
            run?.Finish(curve);
            return curve;
        }
        DeepSeekLM Trained(string variant, int seed, int steps, out IReadOnlyList<CurvePoint> curve)
        {
            torch.manual_seed(1000 + seed);
            var m = new DeepSeekLM(MlaFrontier.Config(t, FrontierVariant.Parse(variant)));
            m.to(device);
            try { curve = TrainRun($"seed {seed} {variant} {steps} steps", m, steps, t.Loop.LearningRate, seed, seed); }
            catch { m.Dispose(); throw; }
            return m;
        }
        double MaxDiff(DeepSeekLM a, DeepSeekLM b, int seed)
        {
            using var scope = torch.NewDisposeScope();
            using var g = torch.no_grad();
            a.eval(); b.eval();
            var (ids, _, _) = t.Data.Batch(64, new Random(20_000 + seed));
            return (a.forward(ids.to(device)) - b.forward(ids.to(device))).abs().max().item<float>();
        }
        for (int seed = 0; seed < o.Seeds; seed++)
        {
            if (runs?.StopRequested == true) break;
            int before = rows.Count;
            try { Seed(seed); }
            catch (Stopped) { rows.RemoveRange(before, rows.Count - before); break; }   // the run marked the study interrupted
        }
        void Seed(int seed)
        {
            // ---- TransMLA: MQA and GQA-2 → MLA at the same KV bytes
            foreach (var srcName in new[] { "mqa", "gqa2" })
            {
                string exp = $"transmla-{srcName}";
                using var src = Trained(srcName, seed, o.SourceSteps, out _);
                Add(exp, $"{srcName} source ({o.SourceSteps} steps)", seed, src);
                var (exact, rep) = MlaConversion.FromStandard(src);
                using (exact) Add(exp, $"converted, linearized norm (Dc {rep.KvLoraRank}, Dr {rep.RopeDims})", seed, exact, MaxDiff(exact, src, seed));
                var (rms, _) = MlaConversion.FromStandard(src, new MlaConversionOptions { Norm = LatentNormMode.Rms });
                using (rms)
                {
                    Add(exp, "converted, rms norm", seed, rms, MaxDiff(rms, src, seed));
                    var c = TrainRun($"seed {seed} {exp} converted ft", rms, o.FineTuneSteps, o.FineTuneLearningRate, 500 + seed, seed);
                    Add(exp, $"converted (rms) + fine-tune {o.FineTuneSteps}", seed, rms, null, c);
                }
                var cs = TrainRun($"seed {seed} {exp} source ft", src, o.FineTuneSteps, o.FineTuneLearningRate, 500 + seed, seed);
                Add(exp, $"{srcName} source + fine-tune {o.FineTuneSteps}", seed, src, null, cs);
                using var scratch = Trained($"mla-{rep.KvLoraRank}-{rep.RopeDims}", seed, o.FineTuneSteps, out var sc);
                Add(exp, $"mla-{rep.KvLoraRank}-{rep.RopeDims} from scratch, {o.FineTuneSteps} steps", seed, scratch, null, sc);
            }
            // ---- MHA2MLA: MHA → MLA at smaller caches. The 2-norm strategy measures ‖q‖·‖k‖ on a calibration batch of
            // the task (MHA2MLA §3.1), drawn apart from the training and eval streams.
            using var mha = Trained("mha", seed, o.SourceSteps, out _);
            var (calibration, _, _) = t.Data.Batch(64, new Random(30_000 + seed));
            MlaConversionOptions Options(RopeSelection s, int rank, int rope, LatentFactorization f, LatentNormMode n = LatentNormMode.Linearized) =>
                new() { KvLoraRank = rank, RopeDims = rope, Strategy = s, Factorization = f, Norm = n, CalibrationIds = s == RopeSelection.Norm ? calibration : null };
            Add("mha2mla", $"mha source ({o.SourceSteps} steps)", seed, mha);
            foreach (var (rank, rope) in o.MhaTargets.Select(x => (x.Rank, x.Rope)))
            {
                string exp = $"mha2mla-{rank}-{rope}";
                foreach (var strategy in Enum.GetValues<RopeSelection>())
                    foreach (var f in Enum.GetValues<LatentFactorization>())
                    {
                        var (m, _) = MlaConversion.FromStandard(mha, Options(strategy, rank, rope, f));
                        using (m) Add(exp, $"converted {Name(strategy)}/{f.ToString().ToLowerInvariant()}", seed, m, MaxDiff(m, mha, seed));
                    }
                var (byWeights, _) = MlaConversion.FromStandard(mha, new MlaConversionOptions { KvLoraRank = rank, RopeDims = rope, Strategy = RopeSelection.Norm });
                using (byWeights) Add(exp, "converted 2-norm of weights/joint", seed, byWeights, MaxDiff(byWeights, mha, seed));
                foreach (var (strategy, f) in Enum.GetValues<RopeSelection>().Select(s => (s, LatentFactorization.Joint)).Append((RopeSelection.Norm, LatentFactorization.Separate)))
                {
                    var (m, _) = MlaConversion.FromStandard(mha, Options(strategy, rank, rope, f, LatentNormMode.Rms));
                    using (m)
                    {
                        var c = TrainRun($"seed {seed} {exp} {Name(strategy)} {f} ft", m, o.FineTuneSteps, o.FineTuneLearningRate, 500 + seed, seed);
                        Add(exp, $"converted {Name(strategy)}/{f.ToString().ToLowerInvariant()} (rms) + fine-tune {o.FineTuneSteps}", seed, m, null, c);
                    }
                }
                using var scratch = Trained($"mla-{rank}-{rope}", seed, o.FineTuneSteps, out var sc);
                Add(exp, $"mla-{rank}-{rope} from scratch, {o.FineTuneSteps} steps", seed, scratch, null, sc);
            }
            foreach (int rank in o.RankSweep)
            {
                var (m, _) = MlaConversion.FromStandard(mha, Options(RopeSelection.Norm, rank, 4, LatentFactorization.Joint));
                using (m) Add("mha2mla-rank-sweep", $"2-norm/joint, Dr 4, Dc {rank}", seed, m, MaxDiff(m, mha, seed));
            }
        }
        var summary = rows.GroupBy(r => (r.Experiment, r.Case)).Select(g =>
        {
            var (l, lc) = SeedStatistics.MeanCi95(g.Select(r => r.EvalLoss).ToArray());
            var (a, ac) = SeedStatistics.MeanCi95(g.Select(r => r.EvalAccuracy).ToArray());
            double? d = g.All(r => r.MaxLogitDiff is not null) ? g.Average(r => r.MaxLogitDiff!.Value) : null;
            return new ConversionSummary(g.Key.Experiment, g.Key.Case, g.First().KvElementsPerToken, g.Count(), l, lc, a, ac, d);
        }).ToList();
        return new MlaConversionExperimentResult(o, rows, summary) { Partial = runs?.Interrupted == true };
    }

    static string Name(RopeSelection s) => s == RopeSelection.Norm ? "2-norm" : s.ToString().ToLowerInvariant();

    public static string Markdown(MlaConversionExperimentResult r, string machine, string command)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# MLA conversion: TransMLA (GQA/MQA → MLA) and MHA2MLA (MHA → MLA) on MQAR").AppendLine();
        sb.AppendLine($"Command: `{command}`  ").AppendLine($"Machine: {machine}  ");
        if (r.Partial) sb.AppendLine().AppendLine($"**Partial:** interrupted; {r.Rows.Select(x => x.Seed).Distinct().Count()} of {r.Options.Seeds} seeds finished. Continue with the same command and `--resume`.");
        sb.AppendLine($"Sources trained {r.Options.SourceSteps} steps; fine-tunes {r.Options.FineTuneSteps} steps at lr {r.Options.FineTuneLearningRate}; {r.Options.Seeds} seeds; mean ± 95 % Student-t CI. KV = elements per token, all layers (bytes = 2 × in bf16). Loss is excess loss over Bayes (0).").AppendLine();
        foreach (var g in r.Summary.GroupBy(s => s.Experiment))
        {
            sb.AppendLine($"## {g.Key}").AppendLine();
            sb.AppendLine("| case | KV elem/token | excess loss | accuracy | max abs Δlogit vs source |").AppendLine("|---|---:|---|---|---:|");
            foreach (var s in g)
                sb.AppendLine($"| {s.Case} | {s.KvElementsPerToken} | {s.MeanLoss:F4} ± {s.LossCi95:F4} | {s.MeanAccuracy:P1} ± {s.AccuracyCi95:P1} | {(s.MeanMaxLogitDiff is { } d ? d.ToString("G3") : "")} |");
            sb.AppendLine();
        }
        sb.AppendLine("![fine-tune curves](mla-convert-curves.png)");
        return sb.ToString();
    }

    public static void Write(MlaConversionExperimentResult r, string dir, string machine, string command)
    {
        Directory.CreateDirectory(dir);
        IO.AtomicFile.WriteAllText(Path.Combine(dir, "mla-convert.json"), MlaFrontier.Json(new { command, machine, result = r }));
        IO.AtomicFile.WriteAllText(Path.Combine(dir, "mla-convert.md"), Markdown(r, machine, command));
        IO.AtomicFile.WriteAllBytes(Path.Combine(dir, "mla-convert-curves.png"), FrontierPlots.Curves(
            r.Rows.Where(x => x.Curve is not null && x.Experiment.StartsWith("transmla", StringComparison.Ordinal)).Select(x => ($"{x.Experiment}: {x.Case}", x.Curve!)),
            "TransMLA fine-tunes and baselines: eval loss"));
    }
}
