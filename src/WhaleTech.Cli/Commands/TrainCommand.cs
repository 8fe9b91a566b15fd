using System.CommandLine;

namespace WhaleTech.Cli.Commands;

public static class TrainCommand
{
    public static Command Build()
    {
        var cmd = new Command("train", "(coming soon)");
        cmd.SetAction(_ => { Console.WriteLine("not yet"); return 0; });
        return cmd;
    }
}
