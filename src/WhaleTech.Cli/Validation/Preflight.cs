// The validation pass that runs after parsing and before a command's action: --max-memory, WHALETECH_THREADS and
// WHALETECH_SMALL_GEMM_FEW_ROWS, every option and argument against its rule (Rules.cs), then the command's own
// cross-option and memory checks.
// A WhaleArgumentException that names a library parameter ("heads", "batch_size") is reported under the
// command's option for it ("--heads", "--batch-size"), so every message names what the user typed.
// WHALETECH_DRY_RUN=1 stops after this pass with exit code 0 (the robustness suite's "valid value" cases).
using System.CommandLine;
using WhaleTech.Runtime;

namespace WhaleTech.Cli.Validation;

public static class Preflight
{
    public const string DryRunVariable = "WHALETECH_DRY_RUN";

    public static bool DryRun => Environment.GetEnvironmentVariable(DryRunVariable) is "1" or "true";

    /// <summary>Checks the parsed command line; throws WhaleArgumentException / WhaleFormatException.</summary>
    public static void Run(ParseResult parse)
    {
        MemoryBudget.Override = null;
        var command = parse.CommandResult.Command;
        foreach (var root in Ancestors(command))
            foreach (var o in root.Options.Where(o => o.Recursive && Rules.RuleOf(o) is not null))
                Rules.RuleOf(o)!.Validate(o.Name, Value(parse, o));
        if (parse.GetValue<string?>(Rules.MaxMemoryName) is { } limit) MemoryBudget.Override = MemoryBudget.Parse(Rules.MaxMemoryName, limit);
        if (Environment.GetEnvironmentVariable(MemoryBudget.Variable) is { Length: > 0 } env) MemoryBudget.Parse(MemoryBudget.Variable, env);
        Backend.EnvironmentThreads();
        WhaleTech.Core.SmallGemm.EnvironmentFewRows();
        foreach (var a in command.Arguments)
            if (Rules.RuleOf(a) is { } rule) rule.Validate(a.Name, Value(parse, a));
        foreach (var o in command.Options)
            if (Rules.RuleOf(o) is { } rule) rule.Validate(o.Name, Value(parse, o));
        Rules.CheckOf(command)?.Invoke(new Values(parse, command));
    }

    static IEnumerable<Command> Ancestors(Command c)
    {
        for (Symbol? s = c; s is Command cmd; s = cmd.Parents.FirstOrDefault()) yield return cmd;
    }

    /// <summary>The value of an option or argument, whatever its type.</summary>
    public static object? Value(ParseResult p, Symbol s) => s is Option { HasDefaultValue: false } opt && p.GetResult(opt) is null ? null : s switch
    {
        Option<int> o => p.GetValue(o),
        Option<int?> o => p.GetValue(o),
        Option<long> o => p.GetValue(o),
        Option<long[]> o => p.GetValue(o),
        Option<double> o => p.GetValue(o),
        Option<double?> o => p.GetValue(o),
        Option<bool> o => p.GetValue(o),
        Option<string> o => p.GetValue(o),
        Option<string[]> o => p.GetValue(o),
        Argument<string> a => p.GetValue(a),
        Argument<string[]> a => p.GetValue(a),
        _ => throw new InvalidOperationException($"Preflight cannot read {s.Name} of type {s.GetType()}"),
    };

    static readonly Dictionary<string, string[]> Aliases = new()
    {
        ["learning_rate"] = ["--lr"], ["lr"] = ["--lr"], ["sft_learning_rate"] = ["--sft-lr"], ["batch_size"] = ["--batch-size", "--batch"], ["batch"] = ["--batch", "--batch-size"],
        ["seq_len"] = ["--seq-len"], ["ref_model_sync_steps"] = ["--ref-sync-steps"], ["shared_experts"] = ["--shared"], ["vocab"] = [],
        ["advantage"] = ["--scale-rewards"], ["loss"] = ["--loss-type"], ["mask_truncated_completions"] = ["--mask-truncated"],
        ["hidden_size"] = ["--hidden"], ["num_hidden_layers"] = ["--layers"], ["num_attention_heads"] = ["--heads"],
        ["character"] = ["--prompt", "--text"], ["model"] = ["--model"], ["tiny model"] = [],
    };

    /// <summary>The option of <paramref name="command"/> a library parameter name stands for, or null.</summary>
    public static string? OptionFor(Command command, string parameter)
    {
        if (parameter.StartsWith('-') || parameter.Contains('/')) return null;
        var names = command.Options.Select(o => o.Name).Concat(Ancestors(command).SelectMany(c => c.Options.Where(o => o.Recursive)).Select(o => o.Name)).ToHashSet();
        var candidates = (Aliases.TryGetValue(parameter, out var a) ? a : []).Append("--" + parameter.Replace('_', '-').ToLowerInvariant());
        return candidates.FirstOrDefault(names.Contains);
    }

    /// <summary>The message of a usage error, with a library parameter replaced by the command's option.</summary>
    public static string Message(Command command, WhaleException e)
    {
        if (e is WhaleArgumentException a && OptionFor(command, a.Parameter) is { } option)
            return $"{option} = {a.Value} is not allowed: {a.Allowed}.";
        return e.Message;
    }
}
