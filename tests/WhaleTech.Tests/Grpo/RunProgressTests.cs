using Spectre.Console;
using WhaleTech.Cli.Commands;
using WhaleTech.Lab.Grpo;

namespace WhaleTech.Tests.Grpo;

/// <summary>Steps/s, ETA and time shares of a long run (RunProgress), and a live view that fits 24 rows.</summary>
public class RunProgressTests
{
    [Fact]
    public void RateAndEtaComeFromTheRecentWindow()
    {
        double now = 100;
        var p = new RunProgress(firstStep: 10, window: 4, clock: () => now);
        Assert.True(double.IsNaN(p.StepsPerSecond));
        Assert.Null(p.EtaSeconds(50));
        Assert.Equal("?", RunProgress.Duration(p.EtaSeconds(50)));
        // Steps 11..14 at 2 s each, then steps 15..18 at 0.5 s each: the 4-step window sees only the fast ones.
        for (int s = 11; s <= 14; s++) { now += 2; p.Mark(s); }
        Assert.Equal(0.5, p.StepsPerSecond, 12);                       // 4 steps in 8 s
        Assert.Equal(72, p.EtaSeconds(50)!.Value, 9);                   // 36 steps left / 0.5
        for (int s = 15; s <= 18; s++) { now += 0.5; p.Mark(s); }
        Assert.Equal(2, p.StepsPerSecond, 12);                         // 4 steps in 2 s
        Assert.Equal(16, p.EtaSeconds(50)!.Value, 9);                   // 32 left / 2
        Assert.Equal(10, p.ElapsedSeconds, 12);
        Assert.Equal("2.00 steps/s, ETA 16s (elapsed 10s)", p.Describe(50));
        Assert.Equal("1h02m", RunProgress.Duration(3725));
        Assert.Equal("4m05s", RunProgress.Duration(245));
    }

    [Fact]
    public void TimeSharesAreFractionsOfTheStepTime()
    {
        var m = new Dictionary<string, double> { ["step_time/total"] = 2, ["step_time/generation"] = 1.2, ["step_time/scoring"] = 0.1, ["step_time/update"] = 0.7 };
        var (g, s, u) = RunProgress.TimeShares(m);
        Assert.Equal(0.6, g, 12); Assert.Equal(0.05, s, 12); Assert.Equal(0.35, u, 12);
        Assert.Equal("gen 60% · score 5% · update 35%", RunProgress.DescribeShares(m));
    }

    [Fact]
    public void TheLiveViewOfAFullStepFitsA24RowTerminal()
    {
        // Every key a step with β > 0, dynamic sampling, three rewards and an evaluation logs.
        var m = new Dictionary<string, double>();
        foreach (var k in new[] { "clip_ratio/high_max", "clip_ratio/high_mean", "clip_ratio/low_mean", "clip_ratio/low_min", "clip_ratio/region_mean",
                     "completions/clipped_ratio", "completions/max_length", "completions/mean_length", "dynamic_sampling/kept_groups", "dynamic_sampling/rounds",
                     "entropy", "frac_reward_zero_std", "grad_norm", "kl", "learning_rate", "loss", "nonfinite_skipped", "num_tokens", "reward", "reward_std",
                     "reward_group_std/mean", "rewards/accuracy/mean", "rewards/format/mean", "rewards/partial/mean", "step_time/generation", "step_time/scoring",
                     "step_time/total", "step_time/update", "eval/accuracy", "eval/format" })
            m[k] = 0.123456;
        m["step_time/total"] = 1;
        double now = 0;
        var progress = new RunProgress(clock: () => now);
        now = 3; progress.Mark(10);
        var table = GrpoCommand.LiveTable("GRPO", 10, 500, m, progress, (10, 0.5, 1.0), "start: held-out exact match 17.0 %, format 100.0 %");
        var sw = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(sw), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors });
        console.Profile.Width = 80;
        console.Write(table);
        var lines = sw.ToString().TrimEnd('\n').Split('\n');
        Assert.True(lines.Length <= 23, $"{lines.Length} lines:\n{sw}");   // 23 + the cursor line of a 24-row terminal
        Assert.True(table.Rows.Count <= GrpoCommand.LiveRows, $"{table.Rows.Count} rows");
        Assert.Contains("ETA", sw.ToString());
        Assert.Contains("gen 12%", sw.ToString());
        Assert.All(lines, l => Assert.True(l.Length <= 80, l));
    }
}
