// A whole GRPO experiment, as `whale grpo sft|train|eval` run it: build the policy, SFT warm start (or
// load one), evaluate the start, run the GRPO steps with a JSONL metrics log, sample completions, periodic
// held-out evaluation and checkpoints, then plots and a summary. Output folder:
//   options.json  config.json  sft.bin  policy.bin  metrics.jsonl  samples.jsonl  summary.json
//   reward.png  accuracy.png  length.png  checkpoint/{policy.bin, reference.bin, optimizer.safetensors, state.json}
using System.Diagnostics;
using System.Text.Json;
using TorchSharp;
using WhaleTech.IO;
using WhaleTech.Training;
using WhaleTech.Model;
using static TorchSharp.torch;

using WhaleTech.Grpo;

namespace WhaleTech.Lab.Grpo;

/// <summary>Callbacks for a live display; all optional.</summary>
public sealed class GrpoRunEvents
{
    public Action<string>? Message { get; init; }
    public Action<int, int, double>? SftStep { get; init; }
    /// <summary>GRPO is about to run steps first+1 … total (first = the resumed step, or 0).</summary>
    public Action<int, int>? GrpoStart { get; init; }
    public Action<int, int, SortedDictionary<string, double>>? Step { get; init; }
    public Action<int, IReadOnlyList<GroupSample>>? Samples { get; init; }
}

public sealed record GrpoSummary(
    string Task, int Seed, long Parameters, int Steps, double SftAccuracy, double FinalAccuracy, double BestAccuracy,
    int? FirstStepAtOrAbove95, double SftSeconds, double GrpoSeconds, string Device, int Threads, int? SftStepsRun = null)
{
    /// <summary>True when a stop signal (Ctrl-C) ended the run before its last step; the checkpoint holds where.</summary>
    public bool Interrupted { get; init; }
}

public static class GrpoRun
{
    public const string MetricsFile = "metrics.jsonl", SamplesFile = "samples.jsonl", SummaryFile = "summary.json",
        OptionsFile = "options.json", SftStepsFile = "sft-steps.txt", ConfigFile = "config.json", SftWeights = "sft.bin", FinalWeights = "policy.bin", CheckpointDir = "checkpoint",
        SftCheckpointDir = "sft-checkpoint";

    /// <summary>SFT warm start only: trains, evaluates held-out, saves sft.bin. Returns (accuracy, format rate).</summary>
    /// <param name="init">Continue SFT from these weights (a fresh warmup + cosine schedule over sft_steps) instead of new ones.</param>
    /// <param name="stop">Ctrl-C: the SFT loop writes <c>sft-checkpoint/</c> and returns early; Interrupted tells.</param>
    /// <param name="resume">Continue from <c>&lt;out&gt;/sft-checkpoint</c> (bit-exact).</param>
    public static (double Accuracy, double Format, DeepSeekLM Model) Sft(GrpoOptions o, string outDir, Device device, GrpoRunEvents? ev = null,
        string? init = null, StopSignal? stop = null, bool resume = false)
    {
        o.Validate();
        Directory.CreateDirectory(outDir);
        var cfg = PolicyModel.Config(o);
        var model = PolicyModel.Create(cfg, o.Seed, device);
        if (init is not null) GrpoCheckpoint.LoadModel(model, init);
        var task = o.CreateTask();
        var heldOut = task.HeldOut(o.Seed, o.HeldOut);
        ev?.Message?.Invoke($"policy: {model.ParameterCount():N0} parameters ({o.Policy})");
        var sftCheckpoint = Path.Combine(outDir, SftCheckpointDir);
        resume &= GrpoCheckpoint.SftStep(sftCheckpoint) is not null;
        int firstStep = resume ? GrpoCheckpoint.SftStep(sftCheckpoint)!.Value : 0;
        if (resume) ev?.Message?.Invoke($"resuming SFT at step {firstStep} from {sftCheckpoint}");
        bool targetReached = false;
        var losses = PolicyModel.Sft(model, task, o, heldOut.Select(p => p.Question).ToHashSet(), (s, l) => ev?.SftStep?.Invoke(s, o.SftSteps, l),
            (s, a) =>
            {
                targetReached |= a >= o.SftTargetAccuracy;
                ev?.Message?.Invoke($"sft {s}: validation exact match {a:P1} (target {o.SftTargetAccuracy:P0})");
            }, sftCheckpoint, resume, stop);
        if (stop?.Requested == true && firstStep + losses.Count < o.SftSteps && !targetReached)   // the loop broke on Ctrl-C
        {
            ev?.Message?.Invoke($"SFT interrupted: checkpoint in {sftCheckpoint}; continue with --resume");
            return (double.NaN, double.NaN, model);
        }
        var (acc, fmt, _) = PolicyModel.Evaluate(model, task, heldOut, PolicyModel.DefaultMaxCompletionLength(heldOut));
        AtomicFile.WriteAllText(Path.Combine(outDir, SftStepsFile), (firstStep + losses.Count).ToString(System.Globalization.CultureInfo.InvariantCulture));
        cfg.Save(Path.Combine(outDir, ConfigFile));
        GrpoCheckpoint.SaveModel(model, Path.Combine(outDir, SftWeights));
        AtomicFile.WriteAllText(Path.Combine(outDir, OptionsFile), JsonSerializer.Serialize(o, GrpoCheckpoint.Json));
        ev?.Message?.Invoke($"SFT: {firstStep + losses.Count} steps, held-out exact match {acc:P1}, format {fmt:P1} → {Path.Combine(outDir, SftWeights)}");
        return (acc, fmt, model);
    }

    /// <summary>SFT (unless <paramref name="init"/> names SFT weights, or resuming) then GRPO.
    /// A requested <paramref name="stop"/> (Ctrl-C) ends the run after the current step with a checkpoint, plots and summary.</summary>
    public static GrpoSummary Train(GrpoOptions o, string outDir, Device device, string? init = null, bool resume = false, GrpoRunEvents? ev = null, StopSignal? stop = null)
    {
        var ckpt = Path.Combine(outDir, CheckpointDir);
        bool resuming = resume && File.Exists(Path.Combine(ckpt, GrpoCheckpoint.StateFile));
        if (resuming) o = GrpoCheckpoint.ReadState(ckpt).Options;
        o.Validate();
        Directory.CreateDirectory(outDir);
        var sw = Stopwatch.StartNew();
        DeepSeekLM policy;
        double sftSeconds = 0;
        if (resuming || init is not null)
        {
            policy = PolicyModel.Create(PolicyModel.Config(o), o.Seed, device);
            if (!resuming) GrpoCheckpoint.LoadModel(policy, init!);
        }
        else
        {
            (double sftAccuracy, _, policy) = Sft(o, outDir, device, ev, init: null, stop, resume);
            sftSeconds = sw.Elapsed.TotalSeconds;
            if (double.IsNaN(sftAccuracy))                                  // Ctrl-C during SFT: its checkpoint is written
            {
                long parameters = policy.ParameterCount();
                policy.Dispose();
                return new GrpoSummary(o.Task, o.Seed, parameters, 0, double.NaN, double.NaN, double.NaN, null, sftSeconds, 0,
                    device.ToString(), torch.get_num_threads()) { Interrupted = true };
            }
        }
        var sftStepsPath = Path.Combine(init is null ? outDir : Path.GetDirectoryName(Path.GetFullPath(init))!, SftStepsFile);   // this run's SFT or --init's folder
        int? sftStepsRun = File.Exists(sftStepsPath) && int.TryParse(File.ReadAllText(sftStepsPath), out var n) ? n : null;
        PolicyModel.Config(o).Save(Path.Combine(outDir, ConfigFile));
        AtomicFile.WriteAllText(Path.Combine(outDir, OptionsFile), JsonSerializer.Serialize(o, GrpoCheckpoint.Json));

        using var trainer = new GrpoTrainer(o, policy);
        var metricsPath = Path.Combine(outDir, MetricsFile);
        var history = new List<SortedDictionary<string, double>>();
        if (resuming)
        {
            GrpoCheckpoint.Restore(trainer, ckpt);
            history = ReadMetrics(metricsPath).Where(h => h["step"] <= trainer.Step).ToList();
            AtomicFile.WriteAllText(metricsPath, string.Concat(history.Select(h => ToJsonLine(h) + "\n")));
            ev?.Message?.Invoke($"resumed at step {trainer.Step} from {ckpt}");
        }
        else
        {
            File.Delete(metricsPath);
            File.Delete(Path.Combine(outDir, SamplesFile));
            var (acc0, fmt0) = trainer.Evaluate();
            var start = new SortedDictionary<string, double> { ["step"] = 0, ["eval/accuracy"] = acc0, ["eval/format"] = fmt0 };
            history.Add(start);
            File.AppendAllText(metricsPath, ToJsonLine(start) + "\n");
            ev?.Message?.Invoke($"start: held-out exact match {acc0:P1}, format {fmt0:P1}");
        }

        var grpoClock = Stopwatch.StartNew();
        var tensorBoard = new MetricsLog(outDir, resumeFromStep: resuming ? trainer.Step : null, jsonl: false);   // metrics.jsonl stays as GRPO writes it
        if (!resuming) foreach (var h in history) tensorBoard.Write((int)h["step"], h.Where(kv => kv.Key != "step").ToDictionary());
        ev?.GrpoStart?.Invoke(trainer.Step, o.Steps);
        while (trainer.Step < o.Steps && stop?.Requested != true)
        {
            var m = trainer.TrainStep();
            int step = trainer.Step;
            if (step % o.EvalEvery == 0 || step == o.Steps)
            {
                var (acc, fmt) = trainer.Evaluate();
                m["eval/accuracy"] = acc; m["eval/format"] = fmt;
            }
            history.Add(m);
            File.AppendAllText(metricsPath, ToJsonLine(m) + "\n");
            tensorBoard.Write(step, m.Where(kv => kv.Key != "step").ToDictionary());
            if (step % o.SampleEvery == 0 || step == 1)
            {
                AppendSamples(Path.Combine(outDir, SamplesFile), step, trainer.LastGroups);
                ev?.Samples?.Invoke(step, trainer.LastGroups);
            }
            if (step % o.CheckpointEvery == 0 || step == o.Steps) GrpoCheckpoint.Save(trainer, ckpt);
            ev?.Step?.Invoke(step, o.Steps, m);
        }
        tensorBoard.Dispose();
        bool interrupted = trainer.Step < o.Steps;
        if (interrupted && trainer.Step % o.CheckpointEvery != 0) GrpoCheckpoint.Save(trainer, ckpt);
        GrpoCheckpoint.SaveModel(policy, Path.Combine(outDir, FinalWeights));
        GrpoPlots.Write(history, outDir);

        var evals = history.Where(h => h.ContainsKey("eval/accuracy")).ToList();
        var summary = new GrpoSummary(o.Task, o.Seed, policy.ParameterCount(), trainer.Step,
            evals.FirstOrDefault(h => h["step"] == 0)?["eval/accuracy"] ?? double.NaN,
            evals.Count > 0 ? evals[^1]["eval/accuracy"] : double.NaN,
            evals.Count > 0 ? evals.Max(h => h["eval/accuracy"]) : double.NaN,
            evals.FirstOrDefault(h => h["eval/accuracy"] >= 0.95) is { } hit ? (int)hit["step"] : null,
            sftSeconds, grpoClock.Elapsed.TotalSeconds, device.ToString(), torch.get_num_threads(), sftStepsRun) { Interrupted = interrupted };
        AtomicFile.WriteAllText(Path.Combine(outDir, SummaryFile), JsonSerializer.Serialize(summary, GrpoCheckpoint.Json));
        policy.Dispose();
        return summary;
    }

    /// <summary>Held-out evaluation of a saved run folder (options.json + policy.bin, or sft.bin).</summary>
    public static (double Accuracy, double Format, IReadOnlyList<(MathProblem Problem, string Completion)> Examples) Eval(string runDir, Device device, string? weights = null, int? heldOut = null)
    {
        var optPath = Path.Combine(runDir, OptionsFile);
        if (!File.Exists(optPath)) throw new Runtime.WhaleArgumentException("run", runDir, $"must be a GRPO run folder holding {OptionsFile}");
        var o = JsonSerializer.Deserialize<GrpoOptions>(File.ReadAllText(optPath), GrpoCheckpoint.Json)!;
        if (heldOut is { } n) o = o with { HeldOut = n };
        weights ??= File.Exists(Path.Combine(runDir, FinalWeights)) ? Path.Combine(runDir, FinalWeights) : Path.Combine(runDir, SftWeights);
        using var model = PolicyModel.Create(PolicyModel.Config(o), o.Seed, device);
        GrpoCheckpoint.LoadModel(model, weights);
        var task = o.CreateTask();
        var problems = task.HeldOut(o.Seed, o.HeldOut);
        var (acc, fmt, completions) = PolicyModel.Evaluate(model, task, problems, o.MaxCompletionLength > 0 ? o.MaxCompletionLength : PolicyModel.DefaultMaxCompletionLength(problems));
        return (acc, fmt, problems.Zip(completions).ToList());
    }

    public static string ToJsonLine(SortedDictionary<string, double> m)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteNumber("step", (long)m["step"]);
            foreach (var (k, v) in m)
            {
                if (k == "step") continue;
                if (double.IsFinite(v)) w.WriteNumber(k, v); else w.WriteString(k, v.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }

    public static List<SortedDictionary<string, double>> ReadMetrics(string path)
    {
        var list = new List<SortedDictionary<string, double>>();
        if (!File.Exists(path)) return list;
        foreach (var line in File.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                var d = new SortedDictionary<string, double>();
                foreach (var p in doc.RootElement.EnumerateObject())
                    d[p.Name] = p.Value.ValueKind == JsonValueKind.Number ? p.Value.GetDouble() : double.Parse(p.Value.GetString() ?? "NaN", System.Globalization.CultureInfo.InvariantCulture);
                list.Add(d);
            }
            catch (JsonException) { break; }                                                // a torn last line from a kill
        }
        return list;
    }

    static void AppendSamples(string path, int step, IReadOnlyList<GroupSample> groups)
    {
        var lines = groups.Take(2).SelectMany(g => g.Texts.Take(4).Select((t, i) => JsonSerializer.Serialize(new
        {
            step, question = g.Problem.Question, answer = g.Problem.Answer, completion = t, reward = g.Rewards[i], stopped = g.Stopped[i],
        })));
        File.AppendAllLines(path, lines);
    }
}
