// The samples' registry and runner. Each sample is a static class in its numbered folder with a Title
// and Run(SampleContext); it prints what it shows and writes its plots to out/samples/NN/.
using TorchSharp;
using WhaleTech.Runtime;

namespace WhaleTech.Samples;

public sealed record SampleContext(torch.Device Device, string OutDir, bool Quick, TextWriter Out);

public sealed record SampleInfo(string Number, string Title, Action<SampleContext> Run);

public static class SampleRunner
{
    public static IReadOnlyList<SampleInfo> All { get; } =
    [
        new("01", S01AttentionKvCache.Title, S01AttentionKvCache.Run),
        new("02", S02Mla.Title, S02Mla.Run),
        new("03", S03MlaVsGqa.Title, S03MlaVsGqa.Run),
        new("04", S04MoeRouting.Title, S04MoeRouting.Run),
        new("05", S05LossFreeBalancing.Title, S05LossFreeBalancing.Run),
        new("06", S06Fp8Formats.Title, S06Fp8Formats.Run),
        new("07", S07Fp8Training.Title, S07Fp8Training.Run),
        new("08", S08GrpoAddition.Title, S08GrpoAddition.Run),
        new("09", S09GrpoCountdown.Title, S09GrpoCountdown.Run),
        new("10", S10MtpSpeculative.Title, S10MtpSpeculative.Run),
        new("11", S11HubCheckpoints.Title, S11HubCheckpoints.Run),
        new("12", S12MlaConvert.Title, S12MlaConvert.Run),
        new("13", S13MlaFrontierConvergence.Title, S13MlaFrontierConvergence.Run),
    ];

    /// <summary>Runs sample <paramref name="number"/> (e.g. "01"); output under <paramref name="outRoot"/>/NN.</summary>
    public static void Run(string number, torch.Device device, bool quick = false, string outRoot = "out/samples", TextWriter? output = null)
    {
        var sample = All.FirstOrDefault(s => s.Number == number || s.Number == number.PadLeft(2, '0'))
            ?? throw new WhaleArgumentException("sample", number, "must be one of " + string.Join(", ", All.Select(s => s.Number)));
        var dir = Path.Combine(outRoot, sample.Number);
        // Created for the sample's files; removed again (with an out root made here) when the sample wrote none,
        // so a sample without plots (02, 10) leaves no empty folder behind.
        var created = new[] { outRoot, dir }.Where(d => !Directory.Exists(d)).ToList();
        Directory.CreateDirectory(dir);
        var o = output ?? Console.Out;
        o.WriteLine($"== Sample {sample.Number}: {sample.Title}");
        try { sample.Run(new SampleContext(device, dir, quick, o)); }
        finally
        {
            foreach (var d in Enumerable.Reverse(created))
                if (Directory.Exists(d) && !Directory.EnumerateFileSystemEntries(d).Any()) Directory.Delete(d);
        }
    }

    public static int RunCommandLine(string[] args)
    {
        try
        {
            if (args.Length == 0 || args[0] is "list" or "--help" or "-h")
            {
                Console.WriteLine("usage: dotnet run -c Release --project samples -- <NN|all|list> [--quick] [--device auto|cpu|cuda]\n");
                foreach (var s in All) Console.WriteLine($"  {s.Number}  {s.Title}");
                return args.Length == 0 ? 2 : 0;
            }
            Backend.ConfigureThreads(1);
            bool quick = args.Contains("--quick");
            int di = Array.IndexOf(args, "--device");
            var device = Backend.ResolveDevice(di >= 0 && di + 1 < args.Length ? args[di + 1] : "auto");
            var unknown = args.Skip(1).Where((a, i) => a.StartsWith("--", StringComparison.Ordinal) && a is not "--quick" and not "--device").ToList();
            if (unknown.Count > 0) throw new WhaleArgumentException("option", unknown[0], "must be --quick or --device");
            foreach (var s in args[0] == "all" ? All.Select(s => s.Number) : [args[0]]) Run(s, device, quick);
            return 0;
        }
        catch (WhaleArgumentException e) { Console.Error.WriteLine("error: " + e.Message); return 2; }
    }
}
