// Seeded CPU results that a refactoring must not change. The files under Golden/before/ were written by the
// code before the library was split into layers (core + Lab); these tests rerun the same commands and compare
// every seeded number (losses, MaxVio, SQNR, accuracies, rewards, KL, entropy …), ignoring only timings and
// the machine line.
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using WhaleTech.Cli;

namespace WhaleTech.Tests.Golden;

public class SeededResultsTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("whale-golden-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    static string Before(string name) => Path.Combine(AppContext.BaseDirectory, "Golden", "before", name);
    static int Whale(params string[] args) => WhaleTech.Cli.Cli.Run(WhaleCommands.Root(), args);

    /// <summary>The numbers of a tour report, minus the machine line, the run time and section 2 (decode timings).</summary>
    static List<string> SeededNumbers(string report)
    {
        var numbers = new List<string>();
        bool timingSection = false;
        foreach (var line in report.Split('\n'))
        {
            if (line.StartsWith("## ")) timingSection = line.StartsWith("## 2.");
            if (timingSection || line.StartsWith("Machine:") || line.StartsWith("Command:") || line.Contains("decode tokens/s")) continue;
            if (line.StartsWith("![")) continue;  // plot links
            numbers.AddRange(Regex.Matches(line, @"-?\d[\d,]*(\.\d+)?(e-?\d+)?").Select(m => m.Value));
        }
        return numbers;
    }

    [Fact]
    public void QuickTourSeededNumbersAreUnchanged()
    {
        var outDir = Path.Combine(_dir, "tour");
        Assert.Equal(0, Whale("tour", "--device", "cpu", "--quick", "--out", outDir));
        var expected = SeededNumbers(File.ReadAllText(Before("tour-quick-report.md")));
        var actual = SeededNumbers(File.ReadAllText(Path.Combine(outDir, "report.md")));
        Assert.True(expected.Count > 50, $"only {expected.Count} numbers in the before-report");
        Assert.Equal(expected, actual);
    }

    /// <summary>The command that wrote Golden/before/grpo-50-metrics.jsonl (rewritten since; Golden/before/README.md says when and why): a MoE policy (loss-free balancer),
    /// SFT warm start, 50 GRPO steps with three weighted rewards, evaluation every 25 steps.</summary>
    internal static readonly string[] Grpo50 =
    [
        "grpo", "train", "--task", "addition", "--digits", "1", "--hidden", "32", "--layers", "1", "--heads", "2",
        "--moe-experts", "4", "--moe-top-k", "2", "--sft-steps", "150", "--sft-batch", "16", "--steps", "50",
        "--prompts-per-step", "4", "--num-generations", "4", "--held-out", "20", "--eval-every", "25", "--lr", "1e-3",
        "--rewards", "accuracy:1,format:0.2,partial:0.2", "--device", "cpu", "--plain",
    ];

    /// <summary>metrics.jsonl rows without the step_time/* timings.</summary>
    internal static List<string> SeededMetrics(string path) => File.ReadAllLines(path).Select(line =>
    {
        var row = JsonNode.Parse(line)!.AsObject();
        foreach (var key in row.Select(kv => kv.Key).Where(k => k.StartsWith("step_time/")).ToList()) row.Remove(key);
        return row.ToJsonString();
    }).ToList();

    [Fact]
    public void Grpo50StepMetricsAreUnchanged()
    {
        var outDir = Path.Combine(_dir, "grpo");
        Assert.Equal(0, Whale([.. Grpo50, "--out", outDir]));
        var expected = SeededMetrics(Before("grpo-50-metrics.jsonl"));
        Assert.Equal(51, expected.Count);
        Assert.Equal(expected, SeededMetrics(Path.Combine(outDir, "metrics.jsonl")));
    }
}
