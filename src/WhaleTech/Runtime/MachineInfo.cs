// A description of the machine a result was measured on. Every benchmark result and the `whale info`
// command carry one, so a number in the repo always says where it came from.
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json.Serialization;
using TorchSharp;

namespace WhaleTech.Runtime;

public sealed record MachineInfo(
    [property: JsonPropertyName("cpu")] string Cpu,
    [property: JsonPropertyName("logical_cores")] int LogicalCores,
    [property: JsonPropertyName("torch_threads")] int TorchThreads,
    [property: JsonPropertyName("memory_gib")] double MemoryGiB,
    [property: JsonPropertyName("os")] string Os,
    [property: JsonPropertyName("dotnet")] string DotNet,
    [property: JsonPropertyName("torchsharp")] string TorchSharp,
    [property: JsonPropertyName("libtorch")] string LibTorch,
    [property: JsonPropertyName("backend")] string Backend,
    [property: JsonPropertyName("device")] string Device,
    [property: JsonPropertyName("gpu")] string? Gpu,
    [property: JsonPropertyName("gpu_memory_gib")] double? GpuMemoryGiB,
    [property: JsonPropertyName("cpu_detail")] string? CpuDetail = null)
{
    /// <summary>Reads the description of this machine, for the given device.</summary>
    public static MachineInfo Collect(torch.Device device)
    {
        Runtime.Backend.Initialize();
        var (gpu, gpuMem) = device.type == DeviceType.CUDA ? QueryGpu() : (null, null);
        return new MachineInfo(
            Cpu: CpuModel(),
            LogicalCores: Environment.ProcessorCount,
            TorchThreads: torch.get_num_threads(),
            MemoryGiB: Math.Round(GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1024.0 * 1024 * 1024), 1),
            Os: RuntimeInformation.OSDescription,
            DotNet: RuntimeInformation.FrameworkDescription,
            TorchSharp: typeof(torch).Assembly.GetName().Version?.ToString() ?? "?",
            LibTorch: LibTorchVersion(),
            Backend: Runtime.Backend.BackendName,
            Device: device.ToString(),
            Gpu: gpu,
            GpuMemoryGiB: gpuMem,
            CpuDetail: CpuDetailLine());
    }

    /// <summary>One line for report headers.</summary>
    public override string ToString()
        => $"{Cpu}{(CpuDetail is null ? "" : $" [{CpuDetail}]")} ({LogicalCores} logical cores, {TorchThreads} torch threads, {MemoryGiB} GiB), {Os}; {DotNet}; " +
           $"TorchSharp {TorchSharp}, libtorch {LibTorch}, backend {Backend}; device {Device}" +
           (Gpu is null ? "" : $" = {Gpu} ({GpuMemoryGiB} GiB)");

    static string CpuModel()
    {
        try
        {
            if (File.Exists("/proc/cpuinfo"))
                foreach (var line in File.ReadLines("/proc/cpuinfo"))
                    if (line.StartsWith("model name", StringComparison.Ordinal))
                        return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        return RuntimeInformation.ProcessArchitecture.ToString();
    }

    /// <summary>CPU family/model, its microarchitecture where known, clock and vector width, from /proc/cpuinfo: a VM's
    /// "model name" can be the same ("AMD EPYC") on CPUs whose limits differ by 2× (a Zen 4 runs 512-bit FMAs at half
    /// a Zen 5's rate), so results from different hosts need this to be told apart. Null where /proc/cpuinfo is absent.</summary>
    static string? CpuDetailLine()
    {
        if (HostCpu.Value is not { } cpu) return null;
        string arch = Microarchitecture(cpu.Vendor, cpu.Family, cpu.Model) is { } a ? $", {a}" : "";
        string clock = double.TryParse(cpu.Mhz, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var m) ? $", {m / 1000:F1} GHz" : "";
        var flags = cpu.Flags?.Split(' ') ?? [];
        string vectors = flags.Contains("avx512f") ? ", AVX-512" : flags.Contains("avx2") ? ", AVX2" : "";
        return $"family {cpu.Family} model {cpu.Model}{arch}{clock}{vectors}";
    }

    /// <summary>This host's microarchitecture ("Zen 4", "Zen 5", …) where known, else null: kernels whose fastest
    /// walk differs between CPUs choose by it (Core/SmallGemm).</summary>
    public static string? HostMicroarchitecture => HostCpu.Value is { } cpu ? Microarchitecture(cpu.Vendor, cpu.Family, cpu.Model) : null;

    sealed record CpuFields(string? Vendor, int Family, int Model, string? Mhz, string? Flags);

    /// <summary>The first processor's block of /proc/cpuinfo, read once; null where absent or unreadable.</summary>
    static readonly Lazy<CpuFields?> HostCpu = new(() =>
    {
        try
        {
            if (!File.Exists("/proc/cpuinfo")) return null;
            string? vendor = null, family = null, model = null, mhz = null, flags = null;
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
            {
                int colon = line.IndexOf(':');
                if (colon < 0) { if (vendor is not null) break; continue; }            // the first processor's block only
                string key = line[..colon].Trim(), value = line[(colon + 1)..].Trim();
                switch (key)
                {
                    case "vendor_id": vendor ??= value; break;
                    case "cpu family": family ??= value; break;
                    case "model": model ??= value; break;
                    case "cpu MHz": mhz ??= value; break;
                    case "flags": flags ??= value; break;
                }
            }
            if (family is null || model is null) return null;
            return new CpuFields(vendor, int.Parse(family), int.Parse(model), mhz, flags);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException) { return null; }
    });

    /// <summary>AMD's Zen generations by family and model (AMD's published family/model numbers); null where unknown.</summary>
    internal static string? Microarchitecture(string? vendor, int family, int model) => vendor switch
    {
        "AuthenticAMD" => family switch
        {
            0x17 => model < 0x30 ? "Zen / Zen+" : "Zen 2",
            0x19 => model is >= 0x10 and < 0x20 or >= 0x60 and < 0x80 or >= 0xA0 and < 0xB0 ? "Zen 4" : "Zen 3",
            0x1A => "Zen 5",
            _ => null,
        },
        _ => null,
    };

    /// <summary>libtorch version: from an external PyTorch's version.py, else the version the package ships.</summary>
    public static string LibTorchVersion()
    {
        var ext = Runtime.Backend.ExternalLibTorchFolder;
        if (ext is not null)
        {
            var versionPy = Path.Combine(ext, "..", "version.py");
            if (File.Exists(versionPy))
                foreach (var line in File.ReadLines(versionPy))
                    if (line.StartsWith("__version__", StringComparison.Ordinal))
                        return line.Split('=', 2)[1].Trim().Trim('\'', '"');
            return "external";
        }
        return "2.10.0 (TorchSharp 0.107 package)";
    }

    static (string?, double?) QueryGpu()
    {
        try
        {
            var psi = new ProcessStartInfo("nvidia-smi", "--query-gpu=name,memory.total --format=csv,noheader,nounits")
            { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            using var p = Process.Start(psi);
            if (p is null) return ("CUDA device", null);
            var first = p.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault();
            p.WaitForExit(5000);
            if (first is null) return ("CUDA device", null);
            var parts = first.Split(',');
            double? mem = parts.Length > 1 && double.TryParse(parts[1].Trim(), System.Globalization.CultureInfo.InvariantCulture, out var mib) ? Math.Round(mib / 1024.0, 1) : null;
            return (parts[0].Trim(), mem);
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return ("CUDA device (nvidia-smi not found)", null);
        }
    }
}
