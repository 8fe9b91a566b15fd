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

    /// <summary>Parses, validates (Validation/Preflight: every option against its rule, then the command's
    /// cross-option and memory checks) and runs. Usage errors — parse errors, WhaleTech argument and format
    /// errors — are one line on stderr and exit code 2; any other failure is one line and exit code 1
    /// (WHALETECH_TRACE=1 adds the stack trace). Nothing is run before the checks pass.</summary>
    public static int Run(RootCommand root, string[] args)
    {
        if (!root.Options.Any(o => o.Name == Validation.Rules.MaxMemoryName)) Validation.Rules.Apply(root);   // a tree not built by WhaleCommands.Root()
        var parsed = root.Parse(args);
        var command = parsed.CommandResult.Command;
        if (parsed.Errors.Count > 0)
        {
            Console.Error.WriteLine("error: " + ParseErrorMessage(parsed) + $" (see: {CommandLine(command)} --help)");
            return UsageError;
        }
        if (parsed.Action is System.CommandLine.Help.HelpAction || parsed.Action is null) return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        try
        {
            Validation.Preflight.Run(parsed);
            if (Validation.Preflight.DryRun)
            {
                Console.Out.WriteLine($"dry run ({Validation.Preflight.DryRunVariable}=1): the arguments of {CommandLine(command)} are valid; nothing was run.");
                return 0;
            }
            Backend.ConfigureThreads(1);
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (Unwrap(e) is WhaleArgumentException or WhaleFormatException)
        {
            Console.Error.WriteLine("error: " + OneLine(Validation.Preflight.Message(command, (WhaleException)Unwrap(e))));
            return UsageError;
        }
        catch (Exception e) when (Unwrap(e) is WhaleException)
        {
            Console.Error.WriteLine("error: " + OneLine(Unwrap(e).Message));
            return 1;
        }
        catch (Exception e) when (Environment.GetEnvironmentVariable("WHALETECH_TRACE") is not ("1" or "true"))
        {
            var inner = Unwrap(e);
            Console.Error.WriteLine($"error: {CommandLine(command)} failed: {inner.GetType().Name}: {OneLine(inner.Message)} (WHALETECH_TRACE=1 shows the stack trace)");
            return 1;
        }
    }

    static string CommandLine(Command c) => "whale" + (c is RootCommand ? "" : " " + Validation.Rules.PathOf(c));

    /// <summary>The first parse error as one line; an unknown command names itself and the commands there are.</summary>
    static string ParseErrorMessage(ParseResult parsed)
    {
        var command = parsed.CommandResult.Command;
        if (parsed.UnmatchedTokens.Count > 0 && command.Subcommands.Count > 0 && parsed.CommandResult.Tokens.Count == 0)
        {
            var token = parsed.UnmatchedTokens[0];
            if (!token.StartsWith('-'))
                return $"'{token}' is not a command of {CommandLine(command)} (commands: {string.Join(", ", command.Subcommands.Where(s => !s.Hidden).Select(s => s.Name))})";
        }
        if (parsed.UnmatchedTokens.Count > 0)
        {
            // `--bessel maybe`: a switch followed by a value that is neither true nor false.
            var tokens = parsed.Tokens;
            for (int i = 1; i < tokens.Count; i++)
                if (tokens[i].Value == parsed.UnmatchedTokens[0] && command.Options.FirstOrDefault(o => o.Name == tokens[i - 1].Value || o.Aliases.Contains(tokens[i - 1].Value)) is { } flag
                    && Validation.Rules.RuleOf(flag) is { Kind: Validation.ValueKind.Flag })
                    return $"{flag.Name} = '{OneLine(tokens[i].Value)}' is not allowed: must be true or false.";
        }
        var error = parsed.Errors.FirstOrDefault(e => !e.Message.StartsWith("Required command", StringComparison.Ordinal)) ?? parsed.Errors[0];
        if (error.SymbolResult is System.CommandLine.Parsing.OptionResult { Option: var option } result && Validation.Rules.RuleOf(option) is { } rule
            && result.Tokens.Count > 0 && error.Message.StartsWith("Cannot parse", StringComparison.Ordinal))
            return $"{option.Name} = '{OneLine(string.Join(" ", result.Tokens.Select(t => t.Value)))}' is not allowed: must be {rule.Allowed}.";
        if (error.Message.StartsWith("Required command", StringComparison.Ordinal) && command.Subcommands.Count > 0)
            return $"{CommandLine(command)} needs a command: {string.Join(", ", command.Subcommands.Where(s => !s.Hidden).Select(s => s.Name))}";
        return OneLine(error.Message);
    }

    static string OneLine(string s)
    {
        var line = string.Join(" ", s.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        return line.Length <= 600 ? line : line[..600] + "…";
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
