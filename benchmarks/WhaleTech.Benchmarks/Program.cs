// WhaleTech.Benchmarks — runs one benchmark suite and writes <out>/<suite>.json, .md and .png.
//
//   dotnet run -c Release --project benchmarks/WhaleTech.Benchmarks -- list
//   dotnet run -c Release --project benchmarks/WhaleTech.Benchmarks -- matmul --device auto [--quick]
//
// Results go to benchmarks/results/<machine-tag>/ unless --out says otherwise. Suites are listed in
// SuiteRegistry.cs. Usage mistakes (unknown suite or flag, bad device) exit with code 2.
using System.CommandLine;
using WhaleTech.Lab.Bench;
using WhaleTech.Benchmarks;
using WhaleTech.Runtime;

var suiteArg = new Argument<string>("suite")
{
    Description = "The suite to run: " + string.Join(", ", SuiteRegistry.All.Select(s => s.Name)) + " (see `list`).",
};
var deviceOpt = new Option<string>("--device")
{
    Description = "Where to run: auto (CUDA when present), cpu, cuda or cuda:N.",
    DefaultValueFactory = _ => "auto",
};
var outOpt = new Option<string?>("--out")
{
    Description = "Folder for <suite>.json/.md/.png. Default: benchmarks/results/<machine-tag> in the repository.",
};
var quickOpt = new Option<bool>("--quick") { Description = "Small sizes and few repetitions: a smoke test in seconds." };

var root = new RootCommand(
    "WhaleTech benchmarks: warm-up, device synchronize, median/p10/p90/min of N repetitions; results as JSON, " +
    "Markdown and a PNG plot with a description of the machine.\nRun `list` to see the suites.")
{
    suiteArg, deviceOpt, outOpt, quickOpt,
};
var list = new Command("list", "Show the suites and what each measures.");
list.SetAction(_ =>
{
    foreach (var s in SuiteRegistry.All) Console.WriteLine($"{s.Name,-10} {s.Description}");
    return 0;
});
root.Subcommands.Add(list);

root.SetAction(parse =>
{
    string name = parse.GetValue(suiteArg)!;
    var suite = SuiteRegistry.Find(name) ?? throw new WhaleArgumentException(
        "suite", name, "must be one of " + string.Join(", ", SuiteRegistry.All.Select(s => s.Name)));
    string deviceChoice = parse.GetValue(deviceOpt)!;
    bool quick = parse.GetValue(quickOpt);
    var device = Backend.ResolveDevice(deviceChoice);
    Backend.ConfigureThreads(null);   // libtorch's default unless WHALETECH_THREADS says otherwise; recorded in the machine line
    WhaleTech.Core.SmallGemm.EnvironmentFewRows();   // a bad WHALETECH_SMALL_GEMM_FEW_ROWS fails here, before any suite runs
    var options = new SuiteOptions(quick);

    Console.WriteLine($"{suite.Name} on {device}{(quick ? " (quick)" : "")}: {suite.Description}");
    var result = suite.Run(device, options);
    if (!result.Parameters.ContainsKey("device")) result.With("device", device.ToString());   // a suite may pin its own
    result.With("quick", quick)
          .With("warmup", options.Warmup).With("repetitions", options.Repetitions);
    string? outGiven = parse.GetValue(outOpt);
    result.Command = "dotnet run -c Release --project benchmarks/WhaleTech.Benchmarks -- " + suite.Name +
                     $" --device {deviceChoice}" + (quick ? " --quick" : "") + (outGiven is null ? "" : $" --out {outGiven}");

    string dir = outGiven ?? Path.Combine(RepositoryRoot(), "benchmarks", "results", MachineTag.For(result.Machine!));
    var files = ResultWriter.Write(result, dir);
    Console.WriteLine(ResultWriter.ToMarkdownTable(result));
    Console.WriteLine($"wrote {files.Json}\n      {files.Markdown}" + (files.Png is null ? "" : $"\n      {files.Png}"));
    return 0;
});

var parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    foreach (var error in parsed.Errors) Console.Error.WriteLine("error: " + error.Message);
    Console.Error.WriteLine("Run with --help to see the suites and options.");
    return 2;
}
try
{
    return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (WhaleException e)
{
    Console.Error.WriteLine("error: " + e.Message);
    return e is WhaleArgumentException or WhaleFormatException ? 2 : 1;
}

// The folder holding WhaleTech.sln above the current directory (results belong in the repository), else the current one.
static string RepositoryRoot()
{
    for (var d = new DirectoryInfo(Directory.GetCurrentDirectory()); d is not null; d = d.Parent)
        if (File.Exists(Path.Combine(d.FullName, "WhaleTech.sln"))) return d.FullName;
    return Directory.GetCurrentDirectory();
}
