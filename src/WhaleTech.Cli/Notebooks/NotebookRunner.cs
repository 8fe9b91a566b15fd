// Runs a C# Jupyter notebook without Jupyter: the code cells are executed in order as one continuing
// Roslyn script (a variable or `using` from cell 1 is visible in cell 2, like a kernel session). Each cell's
// Console output, Display items and last-expression value become its nbformat outputs; the notebook is
// written back atomically. The first failing cell gets an `error` output, later cells are cleared, and a
// NotebookCellException names the cell.
//
//   whale notebook run notebooks/00-welcome.ipynb --device cpu
//   NotebookRunner.Run("notebooks/00-welcome.ipynb", new NotebookRunOptions { Device = "cpu" })   // tests
using System.Collections;
using System.Diagnostics;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Scripting;
using Microsoft.CodeAnalysis.Scripting;
using TorchSharp;
using WhaleTech.Lab.Notebooks;
using WhaleTech.Runtime;

namespace WhaleTech.Cli.Notebooks;

public sealed record NotebookRunOptions
{
    /// <summary>auto | cpu | cuda | cuda:N, handed to cells as <see cref="Notebook.Device"/>.</summary>
    public string Device { get; init; } = "auto";
    /// <summary>Where to write the executed notebook; null = back into the input file.</summary>
    public string? OutputPath { get; init; }
    /// <summary>Longest a single cell may run; null = no limit. A cell past it fails the run (the notebook is written
    /// with a timeout error in that cell). The cell's thread cannot be killed: the CLI exits, a library caller
    /// should treat the session as lost.</summary>
    public TimeSpan? CellTimeout { get; init; }
    /// <summary>Called after each code cell (the CLI prints progress).</summary>
    public Action<CellReport>? OnCell { get; init; }
}

/// <summary>One executed code cell: its 1-based position among all cells, its In[n] count, time and success.</summary>
public sealed record CellReport(int CellNumber, int ExecutionCount, TimeSpan Elapsed, bool Succeeded);

public sealed record NotebookRunResult(string OutputPath, IReadOnlyList<CellReport> Cells, TimeSpan Total);

/// <summary>A code cell failed; the notebook was still written, with the error in that cell.</summary>
public sealed class NotebookCellException : WhaleException
{
    public string NotebookPath { get; }
    /// <summary>1-based position of the cell among all cells of the notebook (markdown included).</summary>
    public int CellNumber { get; }
    public int ExecutionCount { get; }

    public NotebookCellException(string path, int cellNumber, int executionCount, string problem, Exception? inner = null)
        : base($"{path}: cell {cellNumber} (In [{executionCount}]) failed: {problem}", inner)
    {
        NotebookPath = path;
        CellNumber = cellNumber;
        ExecutionCount = executionCount;
    }
}

public static class NotebookRunner
{
    /// <summary>Namespaces every cell sees without a `using`.</summary>
    public static readonly IReadOnlyList<string> DefaultUsings =
    [
        "System", "System.IO", "System.Linq", "System.Text", "System.Collections.Generic", "System.Threading.Tasks",
        "TorchSharp", "WhaleTech.Runtime", "WhaleTech.Core", "WhaleTech.Hub", "WhaleTech.Lab.Bench", "WhaleTech.Lab.Notebooks",
        "WhaleTech.Lab.Mla", "WhaleTech.Lab.Moe", "WhaleTech.Lab.Fp8", "WhaleTech.Lab.Grpo", "WhaleTech.Lab.Mtp",
    ];

    /// <summary>Script options: references to the runtime, TorchSharp, ScottPlot and WhaleTech; <see cref="DefaultUsings"/>.</summary>
    public static ScriptOptions DefaultScriptOptions { get; } = ScriptOptions.Default
        .AddReferences(
            typeof(object).Assembly, typeof(Enumerable).Assembly, typeof(List<>).Assembly, typeof(Console).Assembly,
            typeof(System.Text.Json.JsonSerializer).Assembly, typeof(System.Runtime.GCSettings).Assembly,
            typeof(torch).Assembly, typeof(ScottPlot.Plot).Assembly, typeof(Backend).Assembly, typeof(WhaleTech.Lab.Notebooks.Notebook).Assembly)
        .AddImports(DefaultUsings)
        .WithOptimizationLevel(OptimizationLevel.Release)
        .WithEmitDebugInformation(false);

    public static NotebookRunResult Run(string path, NotebookRunOptions? options = null)
        => RunAsync(path, options).GetAwaiter().GetResult();

    public static async Task<NotebookRunResult> RunAsync(string path, NotebookRunOptions? options = null)
    {
        options ??= new NotebookRunOptions();
        var notebook = NotebookDocument.Load(path);
        var device = Backend.ResolveDevice(options.Device);
        if (options.CellTimeout is { } limit && limit <= TimeSpan.Zero)
            throw new WhaleArgumentException("cell timeout", limit, "must be positive (or null for no limit)");
        string outputPath = options.OutputPath ?? path;
        var total = Stopwatch.StartNew();
        var reports = new List<CellReport>();
        ScriptState<object>? state = null;
        int executionCount = 0;
        NotebookCellException? failure = null;

        using var deviceScope = Notebook.Use(device);
        for (int i = 0; i < notebook.CellCount; i++)
        {
            if (notebook.CellType(i) != "code") continue;
            string source = StripKernelMagic(notebook.Source(i));
            if (failure is not null || string.IsNullOrWhiteSpace(source))
            {
                notebook.SetOutputs(i, null, []);                 // not run: after a failure, or empty
                continue;
            }
            int count = ++executionCount;
            var outputs = new CellOutputs();
            var clock = Stopwatch.StartNew();
            try
            {
                using (ConsoleRouter.Capture(outputs))
                using (Display.Capture(outputs.Add))
                {
                    // Compile first (outside the timeout), then run on its own task so a runaway cell can be abandoned.
                    var previous = state;
                    var script = previous is null ? CSharpScript.Create(source, DefaultScriptOptions) : previous.Script.ContinueWith(source, DefaultScriptOptions);
                    var errors = script.Compile().Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
                    if (errors.Count > 0) throw new CompilationErrorException(string.Join("; ", errors.Select(Describe)), [.. errors]);
                    var cell = Task.Run(() => previous is null ? script.RunAsync() : script.RunFromAsync(previous));
                    if (options.CellTimeout is { } timeout && await Task.WhenAny(cell, Task.Delay(timeout)).ConfigureAwait(false) != cell)
                        throw new TimeoutException($"the cell ran longer than the cell timeout of {timeout.TotalSeconds:0.#} s");
                    state = await cell.ConfigureAwait(false);
                }
                // A cell ending in an expression without ';' has a value; one ending in a statement has none (null).
                if (state.ReturnValue is { } value)
                    outputs.Add(NotebookDocument.ExecuteResult(count, Format(value)));
            }
            catch (CompilationErrorException e)
            {
                var messages = e.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).Select(Describe).ToList();
                outputs.Add(NotebookDocument.Error("CompilationError", string.Join("; ", messages), messages));
                failure = new NotebookCellException(path, i + 1, count, "does not compile: " + string.Join("; ", messages), e);
            }
            catch (Exception e)
            {
                var inner = e is AggregateException { InnerException: { } x } ? x : e;
                var trace = inner.ToString().Split('\n').Select(l => l.TrimEnd('\r')).Take(40).ToList();
                outputs.Add(NotebookDocument.Error(inner.GetType().Name, inner.Message, trace));
                failure = new NotebookCellException(path, i + 1, count, $"{inner.GetType().Name}: {inner.Message}", inner);
            }
            notebook.SetOutputs(i, count, outputs.Finish());
            var report = new CellReport(i + 1, count, clock.Elapsed, failure is null);
            reports.Add(report);
            options.OnCell?.Invoke(report);
        }

        notebook.Save(outputPath);
        if (failure is not null) throw failure;
        return new NotebookRunResult(outputPath, reports, total.Elapsed);
    }

    // Polyglot Notebooks may start a cell with `#!csharp` (its kernel selector); C# is all we run.
    static string StripKernelMagic(string source)
    {
        var lines = source.Split('\n');
        int first = Array.FindIndex(lines, l => l.Trim().Length > 0);
        if (first >= 0 && lines[first].Trim() is var head && (head.Equals("#!csharp", StringComparison.OrdinalIgnoreCase) || head.Equals("#!c#", StringComparison.OrdinalIgnoreCase)))
            lines[first] = "";                                      // blank, so error line numbers still match
        return string.Join('\n', lines);
    }

    static string Describe(Diagnostic d)
    {
        var span = d.Location.GetLineSpan();
        return span.IsValid ? $"line {span.StartLinePosition.Line + 1}: {d.Id} {d.GetMessage()}" : $"{d.Id} {d.GetMessage()}";
    }

    /// <summary>How a cell's value reads in text/plain: tensors with their data, sequences as [a, b, …].</summary>
    public static string Format(object value) => value switch
    {
        string s => s,
        torch.Tensor t => t.ToString(TensorStringStyle.Julia),
        IDictionary d => "{" + string.Join(", ", d.Keys.Cast<object>().Take(20).Select(k => $"{k}: {d[k]}")) + (d.Count > 20 ? ", …" : "") + "}",
        IEnumerable e => "[" + string.Join(", ", e.Cast<object?>().Take(20).Select(x => x is null ? "null" : Format(x))) + (e.Cast<object?>().Skip(20).Any() ? ", …" : "") + "]",
        IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}
