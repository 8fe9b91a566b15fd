// The MLA frontier's result files: mla-frontier.json (read back by `--from`, with the upgrades of older layouts), the
// Markdown report and the plots (FrontierPlots.cs). The experiment itself is MlaFrontier.cs.
//
// Shapes: none (results only).
using System.Text;
using System.Text.Json;
using TorchSharp;
using WhaleTech.Runtime;

namespace WhaleTech.Lab.Mla;

public static partial class MlaFrontier
{
    public static string Markdown(MlaFrontierResult r, string machine, string command)
    {
        var o = r.Options;
        var sb = new StringBuilder();
        var data = o.Data;
        sb.AppendLine($"# MLA frontier: {(o.TaskKind == "language" ? "synthetic-language" : "MQAR")} excess loss vs KV bytes per token").AppendLine();
        if (r.Partial) sb.AppendLine($"**Partial:** interrupted after {r.Runs.Count} of {o.Variants.Length * o.Seeds} runs; continue with the same command and `--resume`.").AppendLine();
        sb.AppendLine($"Command: `{command}`  ").AppendLine($"Machine: {machine}  ");
        string bayes = "";
        if (o.TaskKind == "language")
            using (torch.NewDisposeScope())
            {
                var (ids, targets, mask) = data.Batch(o.EvalSequences, new Random(10_000));
                var (bayesLoss, bayesAccuracy) = data.Bayes(ids, targets, mask);
                bayes = $" On seed 0's eval set the Bayes predictor's NLL is {bayesLoss:F4} nats/token and its top-1 accuracy {bayesAccuracy:P2} (the accuracy column's ceiling).";
            }
        sb.AppendLine($"Task: {data.Describe()}; model D {o.Model.Hidden}, {o.Model.Layers} layers, {o.Model.Heads} heads of {o.HeadDim}; {o.Loop.Steps} steps × batch {o.Loop.BatchSize}, AdamW lr {o.Loop.LearningRate} warm-up + cosine; {o.Seeds} seeds{(o.FirstSeed == 0 ? "" : $" from seed {o.FirstSeed}")}; eval {o.EvalSequences} sequences.{bayes}").AppendLine();
        string refName = r.Points.FirstOrDefault(p => p.PairedReference != "")?.PairedReference ?? "reference";
        sb.AppendLine($"| variant | params | KV B/token (bf16) | excess loss (mean ± 95 % CI) | paired Δ vs {refName} (95 % CI) | accuracy (mean ± 95 % CI) | flat tail | frontier | steps to ≤ {o.SpeedThreshold} nats (runs that got there) |");
        sb.AppendLine("|---|---:|---:|---|---|---|---|---|---|");
        foreach (var p in r.Points)
        {
            string Cell(double mean, double ci, bool signed = false) => SeedStatistics.MeanCiCell(mean, ci, p.Seeds, signed);
            string accuracy = p.Seeds < 2 ? $"{p.MeanAccuracy:P2} (1 seed)" : $"{p.MeanAccuracy:P2} ± {p.AccuracyCi95:P2}";
            string speed = p.ReachedRuns == 0 ? "—" : SeedStatistics.MeanCiCell(p.MeanStepsToThreshold, p.StepsToThresholdCi95, p.ReachedRuns, format: "N0");
            sb.AppendLine($"| {p.Variant} | {p.Parameters:N0} | {p.KvBytesPerTokenBf16:N0} | {Cell(p.MeanExcessLoss, p.ExcessLossCi95)} | {(p.PairedReference == "" ? "—" : Cell(p.PairedDifference, p.PairedDifferenceCi95, signed: true))} | {accuracy} | {p.FlatTailRuns}/{p.Seeds} | {(p.OnFrontier ? "yes" : "")} | {speed} ({p.ReachedRuns}/{p.Seeds}) |");
        }
        if (r.Points.Any(p => p.MeanExactKl is not null))
        {
            static string Sets(int n) => n > 0 ? $"{n} shared" : "own";
            sb.AppendLine().AppendLine("The same runs by the exact KL (the scored token integrated out: a lower-noise estimate of the same excess loss, " +
                "FrontierTasks.cs), averaged over the eval sets shared by every seed where every run of the variant (for a gap: of both) has them, " +
                "else on each seed's own eval set; — where some run predates the KL:").AppendLine();
            sb.AppendLine($"| variant | exact KL (mean ± 95 % CI) | eval sets | paired Δ vs {refName} (95 % CI) | eval sets |").AppendLine("|---|---|---|---|---|");
            foreach (var p in r.Points)
                sb.AppendLine($"| {p.Variant} | {(p.MeanExactKl is { } m ? SeedStatistics.MeanCiCell(m, p.ExactKlCi95 ?? 0, p.Seeds) : "—")} | {(p.MeanExactKl is null ? "—" : Sets(p.ExactKlSharedSets))} | " +
                    $"{(p.PairedKlDifference is { } k ? SeedStatistics.MeanCiCell(k, p.PairedKlCi95!.Value, p.Seeds, signed: true) : "—")} | {(p.PairedKlDifference is null ? "—" : Sets(p.PairedKlSharedSets))} |");
        }
        sb.AppendLine().AppendLine("**Verdict.** " + r.Verdict).AppendLine();
        sb.AppendLine("![frontier](mla-frontier.png)").AppendLine();
        if (r.Points.Any(p => p.PairedReference != "")) sb.AppendLine("![paired gap to the reference](mla-frontier-paired.png)").AppendLine();
        sb.AppendLine("![curves](mla-frontier-curves.png)");
        if (r.Convergence is not null) sb.AppendLine().Append(r.Convergence.Markdown());
        if (r.GapDrift is not null) sb.AppendLine().Append(r.GapDrift.Markdown());
        if (r.EvalNoise is not null) sb.AppendLine().Append(r.EvalNoise.Markdown());
        return sb.ToString();
    }

    public static string Json(object value) => JsonSerializer.Serialize(value, new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals });

    /// <summary>Reads a result written by <see cref="Write"/> (to re-render its table and plots).</summary>
    public static (MlaFrontierResult Result, string Command, string Machine) Read(string path)
    {
        if (!File.Exists(path)) throw new WhaleArgumentException("--from", path, "must name an existing mla-frontier.json");
        var doc = JsonDocument.Parse(File.ReadAllText(path)).RootElement;
        var node = System.Text.Json.Nodes.JsonNode.Parse(doc.GetProperty("result").GetRawText())!;
        if (node["Options"] is System.Text.Json.Nodes.JsonObject legacy) UpgradeFlatOptions(legacy);
        UpgradeFlatTailNames(node);
        var result = node.Deserialize<MlaFrontierResult>(new JsonSerializerOptions { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals })
            ?? throw new WhaleArgumentException("--from", path, "holds no result");
        return (result, doc.GetProperty("command").GetString() ?? "", doc.GetProperty("machine").GetString() ?? "");
    }

    /// <summary>Options written before the model shape and the training loop were records of their own held
    /// "Hidden"/"Layers"/"Heads" and "Steps"/"Batch"/"LearningRate" flat; they move into "Model" and "Loop".</summary>
    static void UpgradeFlatOptions(System.Text.Json.Nodes.JsonObject o)
    {
        if (o.ContainsKey("Model") || o.ContainsKey("Loop")) return;
        System.Text.Json.Nodes.JsonObject Take(params (string From, string To)[] fields)
        {
            var moved = new System.Text.Json.Nodes.JsonObject();
            foreach (var (from, to) in fields)
                if (o.Remove(from, out var value)) moved[to] = value;
            return moved;
        }
        o["Model"] = Take(("Hidden", "hidden"), ("Layers", "layers"), ("Heads", "heads"));
        o["Loop"] = Take(("Steps", "Steps"), ("Batch", "BatchSize"), ("LearningRate", "LearningRate"));
    }

    /// <summary>Results written before the within-run "flat tail" flag got its name called it convergence: "Converged"
    /// (per run), "ConvergedRuns" (per point) and the option "ConvergedDelta" are renamed on reading.</summary>
    static void UpgradeFlatTailNames(System.Text.Json.Nodes.JsonNode result)
    {
        static void Rename(System.Text.Json.Nodes.JsonNode? node, string from, string to)
        {
            if (node is System.Text.Json.Nodes.JsonObject o && !o.ContainsKey(to) && o.Remove(from, out var value)) o[to] = value;
        }
        Rename(result["Options"], "ConvergedDelta", "FlatTailDelta");
        foreach (var run in result["Runs"]?.AsArray() ?? []) Rename(run, "Converged", "FlatTail");
        foreach (var point in result["Points"]?.AsArray() ?? []) Rename(point, "ConvergedRuns", "FlatTailRuns");
    }

    /// <summary>Writes mla-frontier.json, .md, .png, -paired.png (when seeds pair), -curves.png (and -convergence.png when pooled over lengths) into <paramref name="dir"/>.</summary>
    public static void Write(MlaFrontierResult r, string dir, string machine, string command)
    {
        Directory.CreateDirectory(dir);
        IO.AtomicFile.WriteAllText(Path.Combine(dir, "mla-frontier.json"), Json(new { command, machine, result = r }));
        IO.AtomicFile.WriteAllText(Path.Combine(dir, "mla-frontier.md"), Markdown(r, machine, command));
        if (r.Points.Count == 0) return;                                     // interrupted before any run finished: no plots yet
        IO.AtomicFile.WriteAllBytes(Path.Combine(dir, "mla-frontier.png"), FrontierPlots.Frontier(r));
        if (FrontierPlots.Paired(r) is { } paired) IO.AtomicFile.WriteAllBytes(Path.Combine(dir, "mla-frontier-paired.png"), paired);
        IO.AtomicFile.WriteAllBytes(Path.Combine(dir, "mla-frontier-curves.png"),
            FrontierPlots.Curves(r.Runs.Select(x => (x.Variant, x.Curve)), "Eval loss per run (all seeds)" + (r.Partial ? " (partial)" : ""), FrontierPlots.VariantOrder(r)));
        if (r.Convergence is not null) IO.AtomicFile.WriteAllBytes(Path.Combine(dir, "mla-frontier-convergence.png"), r.Convergence.Plot());
    }
}
