using System.Text.Json.Nodes;
using WhaleTech.Cli.Notebooks;
using WhaleTech.Runtime;
using WhaleTech.Lab.Notebooks;

namespace WhaleTech.Tests.Notebooks;

// All notebook tests sit in one class so they run one after another (Roslyn compiles are CPU-heavy).
public class NotebookRunnerTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "whale-nb-" + Guid.NewGuid().ToString("N")[..8]);

    public NotebookRunnerTests() => Directory.CreateDirectory(_dir);
    public void Dispose() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    static JsonObject Code(string source) => new()
    {
        ["cell_type"] = "code", ["execution_count"] = null, ["metadata"] = new JsonObject(), ["outputs"] = new JsonArray(),
        ["source"] = NotebookDocument.Lines(source),
    };

    static JsonObject Markdown(string source) => new()
    {
        ["cell_type"] = "markdown", ["metadata"] = new JsonObject(), ["source"] = source,
    };

    string Write(string name, params JsonObject[] cells)
    {
        var nb = new JsonObject
        {
            ["cells"] = new JsonArray(cells.Cast<JsonNode?>().ToArray()),
            ["metadata"] = new JsonObject(), ["nbformat"] = 4, ["nbformat_minor"] = 4,
        };
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, nb.ToJsonString());
        return path;
    }

    static JsonArray Cells(string path) => (JsonArray)JsonNode.Parse(File.ReadAllText(path))!["cells"]!;
    static string Text(JsonNode lines) => string.Concat(((JsonArray)lines).Select(l => l!.GetValue<string>()));

    [Fact]
    public void CellsShareStateAndTheirPrintPngAndValueAreStored()
    {
        var path = Write("ok.ipynb",
            Markdown("# A tiny notebook"),
            Code("var greeting = \"hello\";\nvar n = torch.ones(3).sum().item<float>();   // TorchSharp inside the script"),
            Code("Console.WriteLine($\"{greeting} {n}\");\n" +
                 "var plt = new ScottPlot.Plot();\nplt.Add.Scatter(new double[] { 1, 2 }, new double[] { 3, 4 });\n" +
                 "Display.Plot(plt, 200, 120);\nDisplay.Markdown(\"**bold**\");\nn * 2"));

        var result = NotebookRunner.Run(path, new NotebookRunOptions { Device = "cpu" });

        Assert.Equal([2, 3], result.Cells.Select(c => c.CellNumber));
        Assert.All(result.Cells, c => Assert.True(c.Succeeded));
        var root = JsonNode.Parse(File.ReadAllText(path))!;
        Assert.Equal(4, root["nbformat"]!.GetValue<int>());
        Assert.Equal(5, root["nbformat_minor"]!.GetValue<int>());
        Assert.Equal(".net-csharp", root["metadata"]!["kernelspec"]!["name"]!.GetValue<string>());
        Assert.Equal("C#", root["metadata"]!["kernelspec"]!["language"]!.GetValue<string>());
        var cells = (JsonArray)root["cells"]!;
        Assert.All(cells, c => Assert.False(string.IsNullOrEmpty(c!["id"]?.GetValue<string>())));
        Assert.Equal("# A tiny notebook", cells[0]!["source"]!.GetValue<string>());      // markdown untouched

        Assert.Equal(1, cells[1]!["execution_count"]!.GetValue<int>());
        Assert.Empty((JsonArray)cells[1]!["outputs"]!);                                  // ends in a statement: no value

        var outputs = (JsonArray)cells[2]!["outputs"]!;
        Assert.Equal(2, cells[2]!["execution_count"]!.GetValue<int>());
        Assert.Equal(["stream", "display_data", "display_data", "execute_result"], outputs.Select(o => o!["output_type"]!.GetValue<string>()));
        Assert.Equal("stdout", outputs[0]!["name"]!.GetValue<string>());
        Assert.Equal("hello 3\n", Text(outputs[0]!["text"]!));
        var png = Convert.FromBase64String(outputs[1]!["data"]!["image/png"]!.GetValue<string>());
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
        Assert.Equal("**bold**", Text(outputs[2]!["data"]!["text/markdown"]!));
        Assert.Equal("6", Text(outputs[3]!["data"]!["text/plain"]!));
        Assert.Equal(2, outputs[3]!["execution_count"]!.GetValue<int>());
    }

    [Fact]
    public void TheFirstFailingCellIsNamedAndLaterCellsAreCleared()
    {
        var path = Write("fail.ipynb",
            Code("var a = 1;"),
            Markdown("text"),
            Code("Console.WriteLine(\"before\");\nthrow new InvalidOperationException(\"boom\");"),
            Code("Console.WriteLine(\"never\");"));
        var output = Path.Combine(_dir, "fail-out.ipynb");

        var e = Assert.Throws<NotebookCellException>(() => NotebookRunner.Run(path, new NotebookRunOptions { Device = "cpu", OutputPath = output }));

        Assert.Equal(3, e.CellNumber);
        Assert.Equal(2, e.ExecutionCount);
        Assert.Contains("cell 3", e.Message);
        Assert.Contains("boom", e.Message);
        var cells = Cells(output);
        var outs = (JsonArray)cells[2]!["outputs"]!;
        Assert.Equal("before\n", Text(outs[0]!["text"]!));
        Assert.Equal("error", outs[1]!["output_type"]!.GetValue<string>());
        Assert.Equal("InvalidOperationException", outs[1]!["ename"]!.GetValue<string>());
        Assert.Equal("boom", outs[1]!["evalue"]!.GetValue<string>());
        Assert.Null(cells[3]!["execution_count"]);
        Assert.Empty((JsonArray)cells[3]!["outputs"]!);
        Assert.Null(Cells(path)[0]!["execution_count"]);                                 // --out left the input alone
    }

    [Fact]
    public void ACellPastTheTimeoutFailsTheRunAndIsNamed()
    {
        var path = Write("slow.ipynb",
            Code("var a = 1;"),
            Code("System.Threading.Thread.Sleep(5000);"),
            Code("Console.WriteLine(\"never\");"));
        var e = Assert.Throws<NotebookCellException>(() => NotebookRunner.Run(path, new NotebookRunOptions { Device = "cpu", CellTimeout = TimeSpan.FromSeconds(1) }));
        Assert.Equal(2, e.CellNumber);
        Assert.Contains("cell timeout", e.Message);
        var cells = Cells(path);
        Assert.Equal("TimeoutException", ((JsonArray)cells[1]!["outputs"]!).Last()!["ename"]!.GetValue<string>());
        Assert.Empty((JsonArray)cells[2]!["outputs"]!);
        Assert.Throws<WhaleArgumentException>(() => NotebookRunner.Run(path, new NotebookRunOptions { Device = "cpu", CellTimeout = TimeSpan.Zero }));
    }

    [Fact]
    public void ACompileErrorNamesTheCellAndTheLine()
    {
        var path = Write("compile.ipynb", Code("#!csharp\nvar ok = 1;"), Code("// comment\nint x = \"text\";"));
        var e = Assert.Throws<NotebookCellException>(() => NotebookRunner.Run(path, new NotebookRunOptions { Device = "cpu" }));
        Assert.Equal(2, e.CellNumber);
        Assert.Contains("line 2", e.Message);
        Assert.Contains("CS0029", e.Message);
        Assert.Equal("CompilationError", Cells(path)[1]!["outputs"]![0]!["ename"]!.GetValue<string>());
    }

    [Fact]
    public void BadFilesAreFormatErrorsAndTheCliExitsWithTwo()
    {
        var notJson = Path.Combine(_dir, "bad.ipynb");
        File.WriteAllText(notJson, "{ not json");
        Assert.Throws<WhaleFormatException>(() => NotebookRunner.Run(notJson));
        var v3 = Path.Combine(_dir, "v3.ipynb");
        File.WriteAllText(v3, """{"nbformat": 3, "worksheets": []}""");
        Assert.Contains("nbformat", Assert.Throws<WhaleFormatException>(() => NotebookRunner.Run(v3)).Message);

        var root = new System.CommandLine.RootCommand { WhaleTech.Cli.Commands.NotebookCommand.Build() };
        Assert.Equal(2, WhaleTech.Cli.Cli.Run(root, ["notebook", "run", Path.Combine(_dir, "missing.ipynb")]));
        Assert.Equal(2, WhaleTech.Cli.Cli.Run(root, ["notebook", "run", notJson]));
    }

    // Every committed notebook runs on the CPU — executed into a temp copy so the committed outputs stay as they are.
    public static TheoryData<string> CommittedNotebooks()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Path.Combine(RepositoryRoot(), "notebooks"), "*.ipynb").Order())
            data.Add(Path.GetFileName(f));
        return data;
    }

    [Theory]
    [MemberData(nameof(CommittedNotebooks))]
    public void EveryCommittedNotebookRunsOnCpu(string name)
    {
        var source = Path.Combine(RepositoryRoot(), "notebooks", name);
        var copy = Path.Combine(_dir, name);
        File.Copy(source, copy);
        var result = NotebookRunner.Run(copy, new NotebookRunOptions { Device = "cpu", CellTimeout = TimeSpan.FromMinutes(5) });
        Assert.NotEmpty(result.Cells);
        Assert.All(result.Cells, c => Assert.True(c.Succeeded));
    }

    internal static string RepositoryRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "WhaleTech.sln"))) return d.FullName;
        throw new InvalidOperationException("WhaleTech.sln not found above " + AppContext.BaseDirectory);
    }
}
