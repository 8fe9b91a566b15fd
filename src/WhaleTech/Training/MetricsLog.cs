// One metrics log for every trainer: each step's scalars as one JSON line (metrics.jsonl, flushed per line, so
// an interrupt loses at most the current step) and as TensorBoard scalars (tfevents files through TorchSharp's
// torch.utils.tensorboard.SummaryWriter; `tensorboard --logdir <run>/tensorboard` shows them).
// Resuming appends: lines of steps after the resume point are dropped first, so the file stays one row per step.
using System.Globalization;
using System.Text.Json;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace WhaleTech.Training;

public sealed class MetricsLog : IDisposable
{
    public const string JsonlFile = "metrics.jsonl", TensorBoardDir = "tensorboard";

    readonly StreamWriter? _jsonl;
    readonly SummaryWriter? _tb;

    public string JsonlPath { get; }

    /// <param name="folder">Run folder: metrics.jsonl and tensorboard/ go there.</param>
    /// <param name="resumeFromStep">Keep only rows with step ≤ this (a resumed run), or null to start afresh.</param>
    /// <param name="jsonl">Write metrics.jsonl (false: TensorBoard only, for a trainer that writes its own JSONL).</param>
    public MetricsLog(string folder, int? resumeFromStep = null, bool tensorBoard = true, bool jsonl = true)
    {
        Directory.CreateDirectory(folder);
        JsonlPath = Path.Combine(folder, JsonlFile);
        if (!jsonl) { }
        else if (resumeFromStep is int keep && File.Exists(JsonlPath))
        {
            var rows = File.ReadAllLines(JsonlPath).Where(l => StepOf(l) is int s && s <= keep).ToList();
            IO.AtomicFile.WriteAllText(JsonlPath, rows.Count == 0 ? "" : string.Join("\n", rows) + "\n");
        }
        else if (File.Exists(JsonlPath)) File.Delete(JsonlPath);
        if (jsonl) _jsonl = new StreamWriter(new FileStream(JsonlPath, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = true };
        if (!tensorBoard) return;
        var tbDir = Path.Combine(folder, TensorBoardDir);
        if (resumeFromStep is null && Directory.Exists(tbDir)) Directory.Delete(tbDir, true);   // a fresh run starts a fresh event log
        _tb = utils.tensorboard.SummaryWriter(tbDir, createRunName: false);
    }

    /// <summary>Writes one step: a JSON line {"step": n, name: value, …} (sorted names) and one scalar per name.</summary>
    public void Write(int step, IReadOnlyDictionary<string, double> scalars)
    {
        var row = new SortedDictionary<string, object> { ["step"] = step };
        foreach (var (k, v) in scalars) row[k] = double.IsFinite(v) ? v : v.ToString(CultureInfo.InvariantCulture);
        _jsonl?.WriteLine(JsonSerializer.Serialize(row));
        if (_tb is null) return;
        foreach (var (k, v) in scalars) if (double.IsFinite(v)) _tb.add_scalar(k, (float)v, step);
    }

    static int? StepOf(string line)
    {
        try { using var d = JsonDocument.Parse(line); return d.RootElement.TryGetProperty("step", out var s) ? s.GetInt32() : null; }
        catch (JsonException) { return null; }
    }

    public void Dispose()
    {
        _jsonl?.Dispose();   // TorchSharp's SummaryWriter writes each event through to its file; nothing to close
    }
}
