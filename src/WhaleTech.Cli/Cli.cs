// Shared pieces of every `whale` command: the --device option, and the error policy.
using System.CommandLine;
using Spectre.Console;
using WhaleTech.Runtime;

namespace WhaleTech.Cli;

public static class Cli
{
    public const int UsageError = 2;

    /// <summary>--device auto|cpu|cuda[:n], on every command.</summary>
    public static Option<string> DeviceOption() => new("--device")
    {
        Description = "Where to run: auto (CUDA when present), cpu, cuda or cuda:N.",
        DefaultValueFactory = _ => "auto",
    };

    /// <summary>Parses and runs; parse errors and WhaleTech argument errors exit with code 2.</summary>
    public static int Run(RootCommand root, string[] args)
    {
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors) Console.Error.WriteLine("error: " + error.Message);
            Console.Error.WriteLine("Run with --help to see the commands and options.");
            return UsageError;
        }
        try
        {
            Backend.ConfigureThreads(1);
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (Unwrap(e) is WhaleArgumentException or WhaleFormatException)
        {
            Console.Error.WriteLine("error: " + Unwrap(e).Message);
            return UsageError;
        }
        catch (Exception e) when (Unwrap(e) is WhaleException)
        {
            Console.Error.WriteLine("error: " + Unwrap(e).Message);
            return 1;
        }
    }

    static Exception Unwrap(Exception e)
    {
        while (e is System.Reflection.TargetInvocationException or AggregateException && e.InnerException is not null) e = e.InnerException;
        return e;
    }

    /// <summary>--shapes v3|v2-lite → the attention shapes of one layer.</summary>
    public static WhaleTech.Lab.Mla.AttentionShapes ParseShapes(string name) => name.Trim().ToLowerInvariant() switch
    {
        "v3" or "deepseek-v3" => WhaleTech.Lab.Mla.AttentionShapes.V3,
        "v2-lite" or "deepseek-v2-lite" => WhaleTech.Lab.Mla.AttentionShapes.V2Lite,
        _ => throw new WhaleArgumentException("--shapes", name, "must be v3 or v2-lite"),
    };

    /// <summary>Prints a key/value table.</summary>
    public static void PrintTable(string title, IEnumerable<(string Key, string Value)> rows)
    {
        var table = new Table().Title(title).AddColumn("").AddColumn("");
        table.HideHeaders();
        foreach (var (k, v) in rows) table.AddRow(Markup.Escape(k), Markup.Escape(v));
        AnsiConsole.Write(table);
    }
}
