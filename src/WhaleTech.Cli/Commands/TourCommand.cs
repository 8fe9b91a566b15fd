// `whale tour`: the main job. See Tour/Tour.cs.
using System.CommandLine;
using WhaleTech.Cli.Tour;
using WhaleTech.Runtime;

namespace WhaleTech.Cli.Commands;

public static class TourCommand
{
    public static Command Build()
    {
        var device = Cli.DeviceOption();
        var outDir = new Option<string>("--out") { Description = "Folder for the report and plots.", DefaultValueFactory = _ => "out/tour" };
        var quick = new Option<bool>("--quick") { Description = "A shorter tour (seconds instead of minutes), for smoke tests." };
        var seed = new Option<int>("--seed") { Description = "Random seed.", DefaultValueFactory = _ => 1 };
        var cmd = new Command("tour", "A guided 2–3 minute walk through MLA, the KV cache, DeepSeekMoE balancing, FP8 and GRPO, with plots and a Markdown report in out/tour/.")
        { device, outDir, quick, seed };
        cmd.SetAction(parse =>
        {
            var ctx = new TourContext
            {
                Device = Backend.ResolveDevice(parse.GetValue(device)), OutDir = parse.GetValue(outDir)!, Quick = parse.GetValue(quick), Seed = parse.GetValue(seed),
                CommandLine = AsTyped(parse),
            };
            TourRunner.Run(ctx);
            return 0;
        });
        return cmd;
    }

    /// <summary>The command as the user typed it (`whale` and the parsed tokens; nothing added for defaults).</summary>
    public static string AsTyped(ParseResult parse) =>
        string.Join(" ", new[] { "whale" }.Concat(parse.Tokens.Select(t => t.Value.Length > 0 && !t.Value.Any(char.IsWhiteSpace) ? t.Value : "'" + t.Value + "'")));
}
