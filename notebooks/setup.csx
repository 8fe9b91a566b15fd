// Setup for WhaleTech's notebooks in Jupyter / VS Code with the .NET Interactive C# kernel (`.net-csharp`).
// The first code cell of every notebook runs `#load "setup.csx"`. It references the locally built library
// (build it first: `dotnet build src/WhaleTech.Cli -c Debug`, or run `bash tools/notebooks/run-all.sh`),
// loads libtorch's and SkiaSharp's native libraries from that build output, and sends WhaleTech's Display
// calls (plots, Markdown tables) to the notebook as image/png and text/markdown outputs.
//
// Paths in #r are relative to this file. The build output is used, not the NuGet cache: on Debian 12 the
// build patches its copy of libLibTorchSharp.so (build/PatchLibTorchSharp.targets).
#r "../src/WhaleTech.Cli/bin/Debug/net10.0/TorchSharp.dll"
#r "../src/WhaleTech.Cli/bin/Debug/net10.0/ScottPlot.dll"
#r "../src/WhaleTech.Cli/bin/Debug/net10.0/SkiaSharp.dll"
#r "../src/WhaleTech.Cli/bin/Debug/net10.0/HarfBuzzSharp.dll"
#r "../src/WhaleTech.Cli/bin/Debug/net10.0/WhaleTech.dll"
#r "../src/WhaleTech.Cli/bin/Debug/net10.0/WhaleTech.Lab.dll"

using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using Microsoft.DotNet.Interactive;

static class WhaleTechNotebookSetup
{
    static bool _done;

    public static void Run()
    {
        if (_done) return;                                   // re-running the cell in the same kernel is harmless
        string bin = Path.GetDirectoryName(typeof(TorchSharp.torch).Assembly.Location)!;
        string rid = (OperatingSystem.IsWindows() ? "win" : OperatingSystem.IsMacOS() ? "osx" : "linux") + "-"
                     + RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();
        string native = Path.Combine(bin, "runtimes", rid, "native");
        if (!Directory.Exists(native))
            throw new DirectoryNotFoundException($"{native} is missing: build the repository first (dotnet build src/WhaleTech.Cli -c Debug).");

        // The kernel's own probing does not look into the build output's runtimes/<rid>/native folder. libtorch:
        // load it in dependency order before the first torch call (each library's DT_NEEDED entries are then
        // already loaded), else TorchSharp's type initializer fails.
        foreach (var pattern in new[] { "libgomp-*.so.1", "libc10.so", "libtorch_cpu.so", "libtorch.so", "libLibTorchSharp.so" })
            foreach (var file in Directory.GetFiles(native, pattern))
                if (!NativeLibrary.TryLoad(file, out _)) throw new DllNotFoundException($"could not load {file}");

        // SkiaSharp and HarfBuzzSharp (ScottPlot's renderer) import their natives by name: resolve those names here.
        foreach (var assembly in new[] { typeof(SkiaSharp.SKImage).Assembly, typeof(HarfBuzzSharp.Blob).Assembly })
        {
            try
            {
                NativeLibrary.SetDllImportResolver(assembly, (name, _, _) =>
                    Directory.GetFiles(native, name + ".*").FirstOrDefault() is { } file ? NativeLibrary.Load(file) : IntPtr.Zero);
            }
            catch (InvalidOperationException) { }            // a resolver was already set in this process
        }

        WhaleTech.Runtime.Backend.Initialize();
        // One libtorch thread, as WhaleTech's programs default to (WHALETECH_THREADS overrides): the models here are
        // tiny, and the seeded numbers then do not depend on the machine's core count.
        WhaleTech.Runtime.Backend.ConfigureThreads(1);
        // Display.Plot / Display.Table / Display.Markdown become outputs of the running cell.
        WhaleTech.Lab.Notebooks.Display.DefaultSink = item => KernelInvocationContext.Current?.DisplayAs(item.Data, item.MimeType);
        _done = true;
    }
}

WhaleTechNotebookSetup.Run();
