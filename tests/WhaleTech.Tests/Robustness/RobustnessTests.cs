// The robustness suite: every option and argument of every `whale` command — enumerated from the command
// tree WhaleCommands.Root() builds, not typed here — gets boundary values derived from its declared rule
// (Validation/Rules.cs), each run as a real process of the built executable with a time and a peak-memory
// limit. The rule for the expected outcome (also in the report's header):
//   * a value outside the declared range/choices/kind (below min, above max, 10^20, NaN, ±inf, empty,
//     not a number, an unknown choice, a missing or wrong-kind path, a flag value other than true/false)
//     must exit 2 with exactly one stderr line "error: …" that names the option, and no stack trace;
//   * a value inside it (min, max, 0/−1 where declared, a valid choice, true/false, a real fixture path)
//     must be accepted — exit 0 under WHALETECH_DRY_RUN=1 (validation done, no work) — unless a check that
//     couples it to another option or to memory rejects it: then exit 2 with one line naming the option.
// Every case must finish within the time limit without exceeding the memory limit. The outcome table is
// written beside the test binaries (robustness-report.md); WHALETECH_UPDATE_REPORTS=1 refreshes the committed
// tests/WhaleTech.Tests/Robustness/report.md (review it with git diff).
using System.CommandLine;
using System.Globalization;
using System.Text;
using WhaleTech.Core;
using WhaleTech.Hub;
using WhaleTech.Cli;
using WhaleTech.Cli.Validation;
using WhaleTech.IO;
using WhaleTech.Model;

namespace WhaleTech.Tests.Robustness;

public sealed record BoundaryCase(string Command, string Option, string Value, bool Valid, string[] Args);

public sealed class RobustnessFixture : IDisposable
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("whale-robust-").FullName;
    public string ModelDir { get; }
    public string TextFile { get; }
    public string AnyFile { get; }
    public string Safetensors => Path.Combine(ModelDir, "model.safetensors");

    public RobustnessFixture()
    {
        ModelDir = Path.Combine(Dir, "model");
        var cfg = ModelConfig.Tiny("mla", vocab: new CharTokenizer().VocabSize, hidden: 16, layers: 1, heads: 2);
        using (var m = new DeepSeekLM(cfg)) StateDict.SavePretrained(m, cfg.ToJson(), ModelDir);
        File.WriteAllBytes(Path.Combine(ModelDir, HubParity.ReferenceFile), []);
        TextFile = Path.Combine(Dir, "corpus.txt");
        File.WriteAllText(TextFile, string.Concat(Enumerable.Repeat("the big cat sat on 17+25=42.\n", 200)));
        AnyFile = Path.Combine(Dir, "some.file");
        File.WriteAllText(AnyFile, "x");
    }

    public void Dispose() { try { Directory.Delete(Dir, true); } catch (IOException) { } }
}

public class RobustnessTests(RobustnessFixture fx) : IClassFixture<RobustnessFixture>
{
    static readonly Dictionary<string, string> DryRun = new() { [Preflight.DryRunVariable] = "1" };

    // ---- the cases --------------------------------------------------------------------------------

    /// <summary>Positional arguments and options each command needs for its other values to be valid.</summary>
    Dictionary<string, List<string>> BaseArgs(string work) => new()
    {
        ["fp8 cast"] = ["465"],
        ["fp8 analyze"] = [fx.Safetensors],
        ["checkpoint inspect"] = [fx.ModelDir],
        ["checkpoint generate"] = [fx.ModelDir, "--ids", "1,5,6"],
        ["checkpoint convert"] = [fx.ModelDir, Path.Combine(work, "converted")],
        ["checkpoint parity"] = [fx.ModelDir],
        ["checkpoint export-parity"] = [Path.Combine(work, "export")],
        ["generate"] = ["--model", fx.ModelDir],
        ["mtp speculate"] = ["--model", fx.ModelDir],
        ["grpo eval"] = ["--run", fx.ModelDir],
        ["mla convert"] = [fx.ModelDir, "--out", Path.Combine(work, "mla-converted")],
    };

    static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>Boundary values of a rule: (value, inside the declared range?).</summary>
    List<(string Value, bool Valid)> Values(OptionRule rule, string key, string work)
    {
        var list = new List<(string, bool)>();
        switch (rule.Kind)
        {
            case ValueKind.Integer:
            {
                bool In(double v) => v >= rule.Min && v <= rule.Max;
                foreach (var v in new[] { rule.Min, rule.Max, rule.Min - 1, rule.Max + 1, 0, -1 }.Distinct())
                    if (double.IsFinite(v) && Math.Abs(v) < 9e18) list.Add((F(v), In(v)));
                list.Add(("100000000000000000000", false));
                list.Add(("abc", false));
                list.Add(("", false));
                if (rule.List) { list.Add(($"{F(rule.Min)},,{F(rule.Min)}", false)); }
                break;
            }
            case ValueKind.Real:
            {
                bool In(double v) => v <= rule.Max && (rule.MinExclusive ? v > rule.Min : v >= rule.Min);
                foreach (var v in new[] { rule.Min, rule.Max, rule.Max * 2 + 1, 0, -1, rule.Min - 1 }.Distinct())
                    if (double.IsFinite(v)) list.Add((F(v), In(v)));
                foreach (var s in new[] { "nan", "inf", "-inf", "1e308", "abc", "" }) list.Add((s, false));
                if (rule.List) list.Add(("0.5,,0.1", false));
                break;
            }
            case ValueKind.Choice:
                list.Add((rule.Choices[0], true));
                if (rule.List) list.Add((string.Join(",", rule.Choices.Take(2)), true));
                list.Add(("no-such-value", false));
                list.Add(("", false));
                break;
            case ValueKind.Flag:
                list.Add(("true", true)); list.Add(("false", true)); list.Add(("maybe", false));
                break;
            case ValueKind.Device:
                list.Add(("cpu", true)); list.Add(("tpu", false)); list.Add(("cuda:99", false)); list.Add(("", false));
                break;
            case ValueKind.Memory:
                list.Add(("4GiB", true)); list.Add(("0", false)); list.Add(("-1", false)); list.Add(("1e30", false)); list.Add(("abc", false));
                break;
            case ValueKind.OutDir:
                list.Add((Path.Combine(work, "out-dir"), true)); list.Add((fx.AnyFile, false)); list.Add(("", false));
                list.Add((Path.Combine(fx.AnyFile, "below-a-file"), false)); list.Add(("/proc/whale-unwritable", false));
                break;
            case ValueKind.OutFile:
            case ValueKind.OutPrefix:
                list.Add((Path.Combine(work, "out-file.json"), true)); list.Add((fx.Dir, false)); list.Add(("", false));
                list.Add((Path.Combine(fx.AnyFile, "x.json"), false)); list.Add(("/proc/whale-unwritable/x.json", false));
                break;
            case ValueKind.InFile:
                list.Add((key.EndsWith("--text", StringComparison.Ordinal) ? fx.TextFile : key.StartsWith("fp8 analyze", StringComparison.Ordinal) ? fx.Safetensors : fx.AnyFile, true));
                list.Add((Path.Combine(fx.Dir, "missing.file"), false)); list.Add((fx.Dir, false)); list.Add(("", false));
                break;
            case ValueKind.InDir:
                list.Add((fx.ModelDir, true)); list.Add((Path.Combine(fx.Dir, "missing-dir"), false)); list.Add((fx.AnyFile, false)); list.Add(("", false));
                break;
            case ValueKind.Text:
                foreach (var (v, ok) in TextSamples.GetValueOrDefault(key.Split(' ').Last(), [("x", true)])) list.Add((v, ok));
                break;
        }
        return list;
    }

    static readonly Dictionary<string, (string, bool)[]> TextSamples = new()
    {
        ["--prompt"] = [("1+2=", true), ("Ünïcödé €", false), (new string('a', 5000), false)],
        ["--model"] = [("deepseek-v3", true), ("no-such-model", false), ("", false)],
        ["values"] = [("2^-10", true), ("abc", false), ("x*2^3", false)],
        ["--ids"] = [("1,5,6", true), ("1,,2", false), ("1,-2", false), ("a", false), ("", false), ("1,99999", false)],
        ["--name"] = [("run-1", true), ("a/b", false), ("", false)],
        ["--rewards"] = [("accuracy:1,format:0.1", true), ("nonsense:1", false), ("", false), ("accuracy:nan", false)],
        ["--variants"] = [("mla-8-4", true), ("gqa2", true), ("xla", false), ("mla-8", false), ("", false)],
        ["--from"] = [("/etc/passwd", true), ("/no/such/mla-frontier.json", false), ("", false)],   // any existing file passes the rule
    };

    public List<BoundaryCase> Cases(string work)
    {
        var root = WhaleCommands.Root();
        var bases = BaseArgs(work);
        var cases = new List<BoundaryCase>();
        foreach (var command in Rules.Walk(root).Where(c => c is not RootCommand && c.Subcommands.Count == 0))
        {
            var path = Rules.PathOf(command);
            var baseArgs = bases.GetValueOrDefault(path, []);
            var positional = command.Arguments.ToList();
            // The global --max-memory is tried on two commands (it is read the same way by all).
            var global = path is "info" or "train lm" ? root.Options.Where(o => o.Recursive) : [];
            var symbols = command.Arguments.Cast<Symbol>().Concat(command.Options).Concat(global);
            foreach (var symbol in symbols)
            {
                var rule = Rules.RuleOf(symbol);
                if (rule is null) continue;
                string key = path + " " + symbol.Name;
                foreach (var (value, valid) in Values(rule, key, work))
                {
                    var args = new List<string>(path.Split(' '));
                    if (symbol is Argument a)
                    {
                        var b = new List<string>(baseArgs);
                        b[positional.IndexOf(a)] = value;
                        args.AddRange(b);
                    }
                    else
                    {
                        var b = new List<string>(baseArgs);
                        int at = b.IndexOf(symbol.Name);
                        if (at >= 0) b.RemoveRange(at, 2);
                        args.AddRange(b);
                        args.Add(symbol.Name);
                        args.Add(value);
                    }
                    cases.Add(new BoundaryCase(path, symbol is Argument ? $"<{symbol.Name}>" : symbol.Name, value, valid, args.ToArray()));
                }
            }
        }
        return cases;
    }

    // ---- the suite --------------------------------------------------------------------------------

    [Fact]
    public async Task EveryOptionOfEveryCommandRejectsBadValuesAndAcceptsGoodOnes()
    {
        var work = Path.Combine(fx.Dir, "work");
        Directory.CreateDirectory(work);
        var cases = Cases(work);
        Assert.True(cases.Count > 500, $"only {cases.Count} cases");
        var results = new (BoundaryCase Case, WhaleRun Run)[cases.Count];
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await Parallel.ForEachAsync(Enumerable.Range(0, cases.Count), new ParallelOptions { MaxDegreeOfParallelism = Math.Max(2, Environment.ProcessorCount * 2) }, async (i, _) =>
        {
            var cwd = Path.Combine(work, "cwd", i.ToString(CultureInfo.InvariantCulture));
            Directory.CreateDirectory(cwd);
            results[i] = (cases[i], await WhaleProcess.RunAsync(cases[i].Args, cwd, DryRun, timeoutSeconds: 60, memoryLimit: 1L << 30));
        });
        var failures = new List<string>();
        foreach (var (c, r) in results)
        {
            string? why = Check(c, r);
            if (why is not null) failures.Add($"{r.CommandLine}: {why} (exit {r.ExitCode}, {r.Seconds:F1} s) stderr: {Trim(r.Stderr)} stdout: {Trim(r.Stdout)}");
        }
        WriteReport(results, clock.Elapsed.TotalSeconds);
        Assert.True(failures.Count == 0, $"{failures.Count} of {cases.Count} cases failed:\n" + string.Join("\n", failures.Take(40)));
    }

    static string Trim(string s) => s.Length <= 300 ? s.Trim() : s[..300] + "…";

    static string Named(BoundaryCase c) => c.Option.Trim('<', '>');

    static string? Check(BoundaryCase c, WhaleRun r)
    {
        if (r.TimedOut) return "timed out";
        if (r.OverMemory) return $"peak memory {r.PeakBytes >> 20} MiB over the limit";
        if (r.HasStackTrace) return "stack trace";
        if (c.Valid)
        {
            if (r.ExitCode == 0) return r.Stdout.Contains("dry run", StringComparison.Ordinal) ? null : "exit 0 without the dry-run line";
            if (r.ExitCode == 2 && r.ErrorLines.Length == 1 && r.ErrorLines[0].StartsWith("error: ", StringComparison.Ordinal) && r.ErrorLines[0].Contains(Named(c), StringComparison.Ordinal))
                return null;   // in range, rejected by a check coupling it to another option or to memory, naming it
            return "a value inside the declared range was not accepted";
        }
        if (r.ExitCode != 2) return "expected exit code 2";
        if (r.ErrorLines.Length != 1) return $"expected one error line, got {r.ErrorLines.Length}";
        if (!r.ErrorLines[0].StartsWith("error: ", StringComparison.Ordinal)) return "the line does not start with 'error: '";
        if (!r.ErrorLines[0].Contains(Named(c), StringComparison.Ordinal)) return $"the line does not name {Named(c)}";
        return null;
    }

    static string Outcome(BoundaryCase c, WhaleRun r) => r.ExitCode switch
    {
        0 => "0 accepted",
        2 when c.Valid => "2 (coupled check)",
        var x => x.ToString(CultureInfo.InvariantCulture),
    };

    static void WriteReport((BoundaryCase Case, WhaleRun Run)[] results, double seconds)
    {
        var md = new StringBuilder();
        md.AppendLine("# Robustness report: every option of every `whale` command × boundary values");
        md.AppendLine();
        md.AppendLine("Regenerated by `RobustnessTests.EveryOptionOfEveryCommandRejectsBadValuesAndAcceptsGoodOnes` (tests/WhaleTech.Tests/Robustness).");
        md.AppendLine("Options are enumerated from `WhaleCommands.Root()`; values derive from each option's declared rule (src/WhaleTech.Cli/Validation/Rules.cs).");
        md.AppendLine("Each case is a real process of the built `whale` with `WHALETECH_DRY_RUN=1` (validation only), a 60 s limit and a 1 GiB peak-RSS limit.");
        md.AppendLine();
        md.AppendLine("Rule: a value outside the declared range, kind or choices must exit 2 with one line naming the option and no stack trace;");
        md.AppendLine("a value inside must exit 0, or 2 with one line naming the option when a check coupling it to another option or to memory rejects it (`2 (coupled check)`).");
        md.AppendLine("Temporary paths are shown as `<tmp>`; ranges that depend on the machine (threads: logical cores) show this machine's values.");
        md.AppendLine();
        int pass = results.Count(x => Check(x.Case, x.Run) is null);
        md.AppendLine($"{results.Length} cases, {pass} as expected; {results.Select(x => x.Case.Command).Distinct().Count()} commands, {results.Select(x => x.Case.Command + x.Case.Option).Distinct().Count()} options and arguments; wall time {seconds:F0} s.");
        md.AppendLine();
        md.AppendLine("| command | option | value | declared | exit | as expected |");
        md.AppendLine("|---|---|---|---|---|---|");
        string tmp = Path.GetTempPath().TrimEnd('/');
        foreach (var (c, r) in results)
        {
            var value = c.Value.Length == 0 ? "(empty)" : c.Value.Length > 24 ? c.Value[..12] + $"…({c.Value.Length} chars)" : c.Value;
            value = System.Text.RegularExpressions.Regex.Replace(value.Replace(tmp, "<tmp>"), @"whale-robust-[^/]*", "fixture").Replace("|", "\\|");
            md.AppendLine($"| {c.Command} | {c.Option} | `{value}` | {(c.Valid ? "inside" : "outside")} | {Outcome(c, r)} | {(Check(c, r) is null ? "yes" : "**NO**")} |");
        }
        // The run's report goes beside the test binaries; the committed copy is refreshed only when asked
        // (WHALETECH_UPDATE_REPORTS=1), so a test run never rewrites a tracked file.
        File.WriteAllText(Path.Combine(AppContext.BaseDirectory, "robustness-report.md"), md.ToString());
        var dir = RepoPath("tests", "WhaleTech.Tests", "Robustness");
        if (dir is not null && Environment.GetEnvironmentVariable("WHALETECH_UPDATE_REPORTS") == "1")
            File.WriteAllText(Path.Combine(dir, "report.md"), md.ToString());
    }

    /// <summary>A folder of the source tree (found above the test binaries), or null when not in a checkout.</summary>
    public static string? RepoPath(params string[] parts)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "WhaleTech.sln")))
            {
                var p = Path.Combine([d.FullName, .. parts]);
                return Directory.Exists(p) ? p : null;
            }
        return null;
    }

    // ---- the tree itself --------------------------------------------------------------------------

    [Fact]
    public void EveryOptionHasARuleADescriptionAndEveryCommandAnExample()
    {
        var root = WhaleCommands.Root();
        var problems = new List<string>();
        foreach (var c in Rules.Walk(root).Where(c => c is not RootCommand && c.Subcommands.Count == 0))
        {
            if (Rules.ExampleOf(c) is null) problems.Add($"{Rules.PathOf(c)}: no example");
            foreach (var o in c.Options.Where(o => o is not System.CommandLine.Help.HelpOption))
            {
                if (Rules.RuleOf(o) is null) problems.Add($"{Rules.PathOf(c)} {o.Name}: no rule");
                var text = o.Description ?? "";
                if (!text.Contains("Allowed:", StringComparison.Ordinal) && !text.Contains("Default:", StringComparison.Ordinal)) problems.Add($"{Rules.PathOf(c)} {o.Name}: help shows no allowed values / default");
                if (text.Split("Allowed:")[0].Split("Default:")[0].Trim().Length == 0) problems.Add($"{Rules.PathOf(c)} {o.Name}: not described");
            }
        }
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }
}
