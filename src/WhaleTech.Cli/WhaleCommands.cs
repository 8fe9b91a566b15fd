// The `whale` command tree. Each command group lives in Commands/<Group>Command.cs and is listed here once;
// tests build the same tree and run commands in-process.
using System.CommandLine;
using WhaleTech.Cli.Commands;

namespace WhaleTech.Cli;

public static class WhaleCommands
{
    public static RootCommand Root()
    {
        var root = new RootCommand(
            "WhaleTech — DeepSeek's core techniques (MLA, DeepSeekMoE, FP8, GRPO) on TorchSharp, to read, run, measure and change.\n" +
            "Start with `whale tour`. Every command that runs a model takes --device auto|cpu|cuda.");
        foreach (var command in new[]
        {
            InfoCommand.Build(),
            TourCommand.Build(),
            TrainCommand.Build(),
            GenerateCommand.Build(),
            KvCommand.Build(),
            MlaCommand.Build(),
            MoeCommand.Build(),
            GrpoCommand.Build(),
            Fp8Command.Build(),
            CheckpointCommand.Build(),
            MtpCommand.Build(),
        })
            root.Subcommands.Add(command);
        return Validation.Rules.Apply(root);   // validation rules, defaults, ranges and examples in --help
    }
}
