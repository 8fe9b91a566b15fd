// Where libtorch comes from and which device runs the work.
//
// Three backends (README "Backends"):
//   cpu       the libtorch CPU natives that the build copied next to the program (default)
//   cuda      TorchSharp-cuda-linux natives (build with -p:WhaleTechBackend=cuda)
//   external  an installed PyTorch: WHALETECH_LIBTORCH names its lib folder; we load libtorch from there
//             before TorchSharp looks for it (build with -p:WhaleTechBackend=external so no second copy
//             sits next to the program).
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Runtime;

public static class Backend
{
    public const string LibTorchVariable = "WHALETECH_LIBTORCH";
    static readonly object Gate = new();
    static bool _initialized;

    /// <summary>The folder libtorch was loaded from, when WHALETECH_LIBTORCH chose it; otherwise null.</summary>
    public static string? ExternalLibTorchFolder { get; private set; }

    /// <summary>Loads libtorch (once). Safe to call many times; every program calls it at start-up.</summary>
    public static void Initialize()
    {
        lock (Gate)
        {
            if (_initialized) return;
            var folder = Environment.GetEnvironmentVariable(LibTorchVariable);
            if (!string.IsNullOrWhiteSpace(folder)) LoadExternal(folder);
            // Touching torch runs TorchSharp's own loader (CPU natives next to the program, or the
            // libraries preloaded above).
            try { _ = torch.get_num_threads(); }
            catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or NotSupportedException)
            {
                throw new WhaleException(
                    "libtorch could not be loaded. Build with the default backend (-p:WhaleTechBackend=cpu), " +
                    $"or set {LibTorchVariable} to a PyTorch 'lib' folder. Details: {Innermost(e).Message}", e);
            }
            _initialized = true;
        }
    }

    static void LoadExternal(string folder)
    {
        if (!Directory.Exists(folder))
            throw new WhaleArgumentException(LibTorchVariable, folder, "must name an existing folder that holds libtorch (e.g. <site-packages>/torch/lib)");
        string ext = OperatingSystem.IsWindows() ? ".dll" : OperatingSystem.IsMacOS() ? ".dylib" : ".so";
        string prefix = OperatingSystem.IsWindows() ? "" : "lib";
        if (!File.Exists(Path.Combine(folder, prefix + "torch" + ext)))
            throw new WhaleArgumentException(LibTorchVariable, folder, $"must hold {prefix}torch{ext} (a libtorch or PyTorch lib folder)");
        // Dependency order: each library's DT_NEEDED entries are then found among those already loaded.
        foreach (var name in new[] { "c10", "torch_cpu", "c10_cuda", "torch_cuda", "torch" })
        {
            var path = Path.Combine(folder, prefix + name + ext);
            if (File.Exists(path) && !NativeLibrary.TryLoad(path, out _))
                throw new WhaleException($"{LibTorchVariable}: found {path} but could not load it (is LD_LIBRARY_PATH missing that folder?).");
        }
        ExternalLibTorchFolder = folder;
    }

    static Exception Innermost(Exception e) { while (e.InnerException is not null) e = e.InnerException; return e; }

    public const string ThreadsVariable = "WHALETECH_THREADS";

    /// <summary>Sets libtorch's CPU intra-op threads: WHALETECH_THREADS when set, else <paramref name="defaultThreads"/>
    /// (null = libtorch's own default, one per core). The programs default to 1: WhaleTech's CPU models are tiny,
    /// their time is per-op overhead, and a thread pool costs more than it gives — on a busy 2-core machine sample 01 ran much faster with
    /// 1 thread than with 2 (an observation, not a committed benchmark). Benchmarks keep libtorch's default and record the count.</summary>
    public static int ConfigureThreads(int? defaultThreads)
    {
        int? n = EnvironmentThreads() ?? defaultThreads;
        if (n is int t0) ThreadLimits.Check("threads", t0);
        Initialize();
        if (n is int threads) torch.set_num_threads(threads);
        return torch.get_num_threads();
    }

    /// <summary>WHALETECH_THREADS when set (checked: 1 … the machine's logical cores, without loading libtorch), else null.</summary>
    public static int? EnvironmentThreads()
    {
        var env = Environment.GetEnvironmentVariable(ThreadsVariable);
        if (string.IsNullOrWhiteSpace(env)) return null;
        if (!long.TryParse(env, out var parsed))
            throw new WhaleArgumentException(ThreadsVariable, env, $"must be an integer in [1, {ThreadLimits.Max}] (CPU threads for libtorch)");
        return ThreadLimits.Check(ThreadsVariable, parsed);
    }

    /// <summary>True when libtorch can run on a CUDA device here.</summary>
    public static bool CudaAvailable
    {
        get { Initialize(); try { return torch.cuda.is_available(); } catch (Exception) { return false; } }
    }

    /// <summary>Resolves the `--device auto|cpu|cuda[:n]` choice every program takes.</summary>
    public static Device ResolveDevice(string? choice)
    {
        Initialize();
        var c = (choice ?? "auto").Trim().ToLowerInvariant();
        if (c == "auto") return CudaAvailable ? torch.CUDA : torch.CPU;
        if (c == "cpu") return torch.CPU;
        if (c == "cuda" || c.StartsWith("cuda:", StringComparison.Ordinal))
        {
            if (!CudaAvailable)
                throw new WhaleArgumentException("--device", choice, "cuda needs a CUDA GPU and a CUDA libtorch (build with -p:WhaleTechBackend=cuda or set WHALETECH_LIBTORCH to a CUDA PyTorch's lib folder); none was found, use auto or cpu");
            if (c == "cuda") return torch.CUDA;
            if (!int.TryParse(c.AsSpan(5), out int idx) || idx < 0 || idx >= torch.cuda.device_count())
                throw new WhaleArgumentException("--device", choice, $"cuda:N needs 0 ≤ N < {torch.cuda.device_count()}");
            return new Device(DeviceType.CUDA, idx);
        }
        throw new WhaleArgumentException("--device", choice, "must be auto, cpu, cuda or cuda:N");
    }

    /// <summary>Waits for queued GPU work; a no-op on CPU. Benchmarks call it before reading a clock.</summary>
    public static void Synchronize(Device device)
    {
        if (device.type == DeviceType.CUDA) torch.cuda.synchronize(device);
    }

    /// <summary>Name of the backend the build chose, read from the natives next to the program.</summary>
    public static string BackendName
    {
        get
        {
            if (ExternalLibTorchFolder is not null) return "external (" + ExternalLibTorchFolder + ")";
            var dir = AppContext.BaseDirectory;
            bool cudaLibs = Directory.EnumerateFiles(dir, "*torch_cuda*", SearchOption.AllDirectories).Any();
            return cudaLibs ? "cuda (TorchSharp-cuda natives)" : "cpu (libtorch CPU natives)";
        }
    }
}
