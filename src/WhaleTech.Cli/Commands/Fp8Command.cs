// `whale fp8 …`: the FP8 simulator from the command line.
//   whale fp8 cast 464 465 2^-10        one value through both formats and both overflow modes
//   whale fp8 sweep [--start --count]   all 2^32 float32 bit patterns vs libtorch's float8 casts → JSON
//   whale fp8 lab                       SQNR / flushed-to-zero table for outlier channels/tokens, gradient underflow
//   whale fp8 accum                     the limited-precision accumulator: error vs K with/without promotion
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using WhaleTech.Fp8;
using WhaleTech.IO;
using WhaleTech.Runtime;

namespace WhaleTech.Cli.Commands;

public static class Fp8Command
{
    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static Command Build()
    {
        var cmd = new Command("fp8", "Simulated FP8 (E4M3/E5M2): casts, exhaustive check against libtorch, scaling lab, accumulator model.");
        cmd.Subcommands.Add(BuildCast());
        cmd.Subcommands.Add(BuildSweep());
        cmd.Subcommands.Add(BuildLab());
        cmd.Subcommands.Add(BuildAccum());
        return cmd;
    }

    static Command BuildCast()
    {
        var values = new Argument<string[]>("values") { Description = "Numbers to cast, e.g. 464 465 -1e-30 inf nan 2^-10 1.5*2^-10.", Arity = ArgumentArity.OneOrMore };
        var cmd = new Command("cast", "Show what E4M3 and E5M2 (non-saturating and saturating) make of some float32 values.") { values };
        cmd.SetAction(parse =>
        {
            Backend.Initialize();
            var table = new Table().AddColumns("x (float32)", "e4m3", "e4m3 sat", "e5m2", "e5m2 sat", "libtorch agrees");
            foreach (var text in parse.GetValue(values)!)
            {
                float x = ParseNumber(text);
                var cells = new List<string> { Show(x) };
                bool agree = true;
                foreach (var (f, mode) in Fp8Sweep.Cases)
                {
                    float emu = Fp8Cast.Round(x, f, mode);
                    using var t = TorchSharp.torch.tensor(new[] { x });
                    using var r = Fp8Cast.Reference(t, f, mode);
                    agree &= BitConverter.SingleToUInt32Bits(emu) == BitConverter.SingleToUInt32Bits(r.data<float>()[0]);
                    cells.Add(Show(emu));
                }
                cells.Add(agree ? "yes" : "NO");
                table.AddRow(cells.Select(Markup.Escape).ToArray());
            }
            AnsiConsole.Write(table);
            return 0;
        });
        return cmd;
    }

    static string Show(float v) => float.IsNaN(v) ? "NaN" : v.ToString("R", CultureInfo.InvariantCulture) + (v == 0 && float.IsNegative(v) ? " (−0)" : "");

    /// <summary>Parses 465, -1e-30, inf, nan, 2^-10 and a*2^k.</summary>
    static float ParseNumber(string text)
    {
        var s = text.Trim().ToLowerInvariant();
        if (s is "inf" or "+inf") return float.PositiveInfinity;
        if (s == "-inf") return float.NegativeInfinity;
        if (s == "nan") return float.NaN;
        double factor = 1;
        int star = s.IndexOf('*');
        if (star > 0)
        {
            factor = double.Parse(s[..star], CultureInfo.InvariantCulture);
            s = s[(star + 1)..];
        }
        if (s.StartsWith("2^", StringComparison.Ordinal) && int.TryParse(s[2..], CultureInfo.InvariantCulture, out int k))
            return (float)(factor * Math.Pow(2, k));
        if (double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v)) return (float)(factor * v);
        throw new WhaleArgumentException("values", text, "must be a number such as 465, -1e-30, inf, nan, 2^-10 or 1.5*2^-10");
    }

    static Command BuildSweep()
    {
        var device = Cli.DeviceOption();
        var start = new Option<long>("--start") { Description = "First float32 bit pattern (0 … 2^32−1).", DefaultValueFactory = _ => 0 };
        var count = new Option<long>("--count") { Description = "How many bit patterns (default: all 2^32).", DefaultValueFactory = _ => Fp8Sweep.AllPatterns };
        var chunk = new Option<int>("--chunk") { Description = "Patterns per chunk.", DefaultValueFactory = _ => 1 << 22 };
        var output = new Option<string>("--out") { Description = "JSON result file (written atomically).", DefaultValueFactory = _ => "benchmarks/results/fp8/sweep.json" };
        var cmd = new Command("sweep", "Compare the emulated E4M3/E5M2 casts with libtorch's float8 casts on every float32 bit pattern (both overflow modes).")
            { device, start, count, chunk, output };
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            long s = parse.GetValue(start), n = parse.GetValue(count);
            if (s < 0 || s >= Fp8Sweep.AllPatterns) throw new WhaleArgumentException("--start", s, "must be in [0, 2^32 − 1]");
            if (n == Fp8Sweep.AllPatterns) n -= s;
            var path = parse.GetValue(output)!;
            var clock = Stopwatch.StartNew();
            List<SweepCase> cases = [];
            AnsiConsole.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask($"{n:N0} patterns × 4 casts", maxValue: n);
                    cases = Fp8Sweep.Run(s, n, dev, parse.GetValue(chunk), done => task.Value = done);
                });
            long mismatches = cases.Sum(c => c.Mismatches);
            var result = new
            {
                kind = "fp8-sweep",
                description = "Emulated FP8 casts (Fp8Cast.Round, float32 tensor ops) vs libtorch x.to(float8).to(float32); saturating reference = clamp(x, ±max) then cast. Float32 bit patterns compared exactly.",
                start = s, count = n, complete = s == 0 && n == Fp8Sweep.AllPatterns,
                total_mismatches = mismatches,
                elapsed_s = Math.Round(clock.Elapsed.TotalSeconds, 1),
                cases,
                machine = MachineInfo.Collect(dev),
            };
            AtomicFile.WriteAllText(path, JsonSerializer.Serialize(result, Indented));
            foreach (var c in cases) AnsiConsole.MarkupLine($"{c.Format} {c.Overflow}: {c.Checked:N0} checked, [{(c.Mismatches == 0 ? "green" : "red")}]{c.Mismatches:N0} mismatches[/]");
            AnsiConsole.MarkupLine($"wrote {Markup.Escape(path)} ({clock.Elapsed.TotalSeconds:F0} s)");
            return mismatches == 0 ? 0 : 1;
        });
        return cmd;
    }

    static Command BuildLab() => new("lab", "(added below)");
    static Command BuildAccum() => new("accum", "(added below)");
}
