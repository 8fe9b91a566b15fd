using System.CommandLine;

namespace WhaleTech.Cli.Commands;

public static class TourCommand
{
    public static Command Build()
    {
        var cmd = new Command("tour", "(coming soon)");
        cmd.SetAction(_ => { Console.WriteLine("not yet"); return 0; });
        return cmd;
    }
}
