// `whale` — the WhaleTech command line. Each command group lives in Commands/<Group>Command.cs and is
// listed here once. Usage errors (unknown flags, bad values, missing files) exit with code 2 and a
// one-line message; no stack trace for a user mistake.
using System.CommandLine;
using WhaleTech.Cli;
using WhaleTech.Cli.Commands;

var root = new RootCommand(
    "WhaleTech — DeepSeek's core techniques (MLA, DeepSeekMoE, FP8, GRPO) on TorchSharp, to read, run, measure and change.\n" +
    "Start with `whale tour`. Every command takes --device auto|cpu|cuda.");
foreach (var command in new[]
{
    InfoCommand.Build(),
    TourCommand.Build(),
    TrainCommand.Build(),
    GenerateCommand.Build(),
    NotebookCommand.Build(),
    Fp8Command.Build(),
})
    root.Subcommands.Add(command);

return Cli.Run(root, args);
