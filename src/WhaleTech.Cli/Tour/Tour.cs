// `whale tour` — the project's main job: a guided 2–3 minute CPU walk through DeepSeek's techniques.
// Each chapter is one class (ITourChapter) that runs, prints what it shows, and adds a section (text,
// a summary row, plots) to the Markdown report in out/tour/.
using System.Diagnostics;
using Spectre.Console;
using TorchSharp;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Cli.Tour;

public sealed class TourContext
{
    public required Device Device { get; init; }
    public required string OutDir { get; init; }
    /// <summary>Smaller everything (tests use it).</summary>
    public bool Quick { get; init; }
    public int Seed { get; init; } = 1;
    /// <summary>The command line as the user gave it, for the report; null = described from the options above.</summary>
    public string? CommandLine { get; init; }
}

/// <summary>What a chapter reports: a Markdown section, one summary row, plot files (relative to OutDir).</summary>
public sealed record TourSection(string Title, string Markdown, string SummaryKey, string SummaryValue, IReadOnlyList<string> Plots);

public interface ITourChapter
{
    string Title { get; }
    TourSection Run(TourContext ctx, Action<double> progress);
}

public static class TourRunner
{
    public static IReadOnlyList<ITourChapter> Chapters() =>
    [
        new KvCacheChapter(),
        new DecodeSpeedChapter(),
        new TinyLmChapter(),
        new MoeBalancingChapter(),
        new Fp8Chapter(),
        new GrpoChapter(),
    ];

    /// <summary>Runs every chapter with progress bars, prints a summary table and writes out/tour/report.md.</summary>
    public static IReadOnlyList<TourSection> Run(TourContext ctx, IReadOnlyList<ITourChapter>? chapters = null)
    {
        chapters ??= Chapters();
        Directory.CreateDirectory(ctx.OutDir);
        var machine = MachineInfo.Collect(ctx.Device);
        AnsiConsole.MarkupLine($"[bold]WhaleTech tour[/] on {Markup.Escape(machine.Device)} — {Markup.Escape(machine.Cpu)}");
        var sections = new List<TourSection>();
        var total = Stopwatch.StartNew();
        foreach (var chapter in chapters)
        {
            AnsiConsole.MarkupLine($"\n[bold yellow]{Markup.Escape(chapter.Title)}[/]");
            TourSection? section = null;
            var sw = Stopwatch.StartNew();
            AnsiConsole.Progress().AutoClear(false).HideCompleted(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .Start(p =>
                {
                    var task = p.AddTask(Markup.Escape(chapter.Title), maxValue: 1.0);
                    section = chapter.Run(ctx, f => task.Value = Math.Clamp(f, 0, 1));
                    task.Value = 1.0;
                });
            AnsiConsole.WriteLine(section!.Markdown.Split("\n## ")[0].Trim());
            AnsiConsole.MarkupLine($"[grey]({sw.Elapsed.TotalSeconds:F1} s)[/]");
            sections.Add(section);
        }
        var table = new Table().Title("Tour summary").AddColumn("chapter").AddColumn("result");
        foreach (var s in sections) table.AddRow(Markup.Escape(s.SummaryKey), Markup.Escape(s.SummaryValue));
        AnsiConsole.Write(table);
        WriteReport(ctx, machine, sections, total.Elapsed);
        AnsiConsole.MarkupLine($"Report: [link]{Markup.Escape(Path.Combine(ctx.OutDir, "report.md"))}[/] ({total.Elapsed.TotalSeconds:F0} s)");
        return sections;
    }

    static void WriteReport(TourContext ctx, MachineInfo machine, List<TourSection> sections, TimeSpan elapsed)
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine("# WhaleTech tour report").AppendLine();
        sb.AppendLine($"Machine: {machine}").AppendLine();
        var command = ctx.CommandLine ?? $"whale tour --device {ctx.Device.type.ToString().ToLowerInvariant()}{(ctx.Quick ? " --quick" : "")}";
        sb.AppendLine($"Command: `{command}` ({elapsed.TotalSeconds:F0} s)").AppendLine();
        sb.AppendLine("| chapter | result |").AppendLine("|---|---|");
        foreach (var s in sections) sb.AppendLine($"| {s.SummaryKey} | {s.SummaryValue} |");
        foreach (var s in sections)
        {
            sb.AppendLine().AppendLine($"## {s.Title}").AppendLine().AppendLine(s.Markdown);
            foreach (var p in s.Plots) sb.AppendLine().AppendLine($"![{s.Title}]({p})");
        }
        IO.AtomicFile.WriteAllText(Path.Combine(ctx.OutDir, "report.md"), sb.ToString());
    }
}
