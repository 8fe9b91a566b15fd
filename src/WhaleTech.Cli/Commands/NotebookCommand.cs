// `whale notebook run <path.ipynb> [--device] [--out]`: executes a C# notebook's code cells in order and
// writes the outputs back into it (see Notebooks/NotebookRunner.cs). Exit code 1 names the failing cell.
using System.CommandLine;
using WhaleTech.Cli.Notebooks;

namespace WhaleTech.Cli.Commands;

public static class NotebookCommand
{
    public static Command Build()
    {
        var path = new Argument<string>("path") { Description = "The .ipynb notebook (nbformat 4, C# code cells)." };
        var device = Cli.DeviceOption();
        var output = new Option<string?>("--out") { Description = "Write the executed notebook here instead of back into <path>." };
        var timeout = new Option<double>("--cell-timeout") { Description = "Seconds one cell may run before the run fails with a timeout in that cell (0 = no limit).", DefaultValueFactory = _ => 1800 };
        var run = new Command("run", "Execute the code cells in order (one C# script session), store their outputs in the notebook, stop at the first failing cell.")
        {
            path, device, output, timeout,
        };
        run.SetAction(parse =>
        {
            string file = parse.GetValue(path)!;
            var result = NotebookRunner.Run(file, new NotebookRunOptions
            {
                Device = parse.GetValue(device)!,
                OutputPath = parse.GetValue(output),
                CellTimeout = Runtime.Guard.NonNegative("--cell-timeout", parse.GetValue(timeout)) is var t && t > 0 ? TimeSpan.FromSeconds(t) : null,
                OnCell = c => Console.WriteLine($"  cell {c.CellNumber,3}  In [{c.ExecutionCount}]  {c.Elapsed.TotalSeconds,6:F2} s  {(c.Succeeded ? "ok" : "FAILED")}"),
            });
            Console.WriteLine($"{result.Cells.Count} code cells ran in {result.Total.TotalSeconds:F1} s; wrote {result.OutputPath}");
            return 0;
        });
        return new Command("notebook", "Run WhaleTech's C# Jupyter notebooks without Jupyter.") { run };
    }
}
