// `whale info`: which backend, device, libtorch, threads and GPU this machine gives WhaleTech.
using System.CommandLine;
using System.Text.Json;
using WhaleTech.Runtime;

namespace WhaleTech.Cli.Commands;

public static class InfoCommand
{
    public static Command Build()
    {
        var device = Cli.DeviceOption();
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a table." };
        var cmd = new Command("info", "Show the backend, device, libtorch version, threads, and GPU name and memory.") { device, json };
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            var info = MachineInfo.Collect(dev);
            if (parse.GetValue(json)) { Console.WriteLine(JsonSerializer.Serialize(info, new JsonSerializerOptions { WriteIndented = true })); return 0; }
            Cli.PrintTable("whale info", [
                ("backend", info.Backend), ("device", info.Device), ("libtorch", info.LibTorch), ("TorchSharp", info.TorchSharp),
                ("CUDA available", Backend.CudaAvailable ? "yes" : "no"),
                ("CPU", info.Cpu), ("logical cores", info.LogicalCores.ToString()), ("torch threads", info.TorchThreads.ToString()),
                ("memory", $"{info.MemoryGiB} GiB"), ("GPU", info.Gpu ?? "-"), ("GPU memory", info.GpuMemoryGiB is { } g ? $"{g} GiB" : "-"),
                ("OS", info.Os), (".NET", info.DotNet)]);
            return 0;
        });
        return cmd;
    }
}
