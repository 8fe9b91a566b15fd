// Runs the built `whale` executable as a real process with a time limit and a peak-memory limit (VmHWM of
// /proc/<pid>/status, polled), and returns exit code, output and peak resident memory.
using System.Diagnostics;

namespace WhaleTech.Tests.Robustness;

public sealed record WhaleRun(string[] Args, int ExitCode, string Stdout, string Stderr, double Seconds, long PeakBytes, bool TimedOut, bool OverMemory)
{
    public string[] ErrorLines => Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    public bool HasStackTrace => (Stdout + Stderr).Contains("\n   at ", StringComparison.Ordinal) || (Stdout + Stderr).Contains("Unhandled exception", StringComparison.Ordinal);
    public string CommandLine => "whale " + string.Join(" ", Args.Select(a => a.Length == 0 ? "\"\"" : a.Contains(' ') ? $"\"{a}\"" : a));
}

public static class WhaleProcess
{
    /// <summary>The apphost next to the test assembly (the test project references WhaleTech.Cli).</summary>
    public static string Executable
    {
        get
        {
            var path = Path.Combine(AppContext.BaseDirectory, OperatingSystem.IsWindows() ? "whale.exe" : "whale");
            if (!File.Exists(path)) throw new FileNotFoundException("the whale executable is not next to the tests; build tests/WhaleTech.Tests", path);
            return path;
        }
    }

    public const long DefaultMemoryLimit = 1L << 30;

    public static async Task<WhaleRun> RunAsync(string[] args, string workingDirectory, IReadOnlyDictionary<string, string>? env = null,
                                                 double timeoutSeconds = 60, long memoryLimit = DefaultMemoryLimit)
    {
        var psi = new ProcessStartInfo(Executable)
        {
            WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_TieredPGO"] = "0";
        psi.Environment["DOTNET_TC_QuickJitForLoops"] = "1";
        psi.Environment["NO_COLOR"] = "1";
        psi.Environment.Remove("WHALETECH_THREADS");
        psi.Environment.Remove("WHALETECH_MAX_MEMORY");
        psi.Environment.Remove("WHALETECH_DRY_RUN");
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        long peak = 0;
        bool timedOut = false, overMemory = false;
        var statusPath = $"/proc/{p.Id}/status";
        while (!p.HasExited)
        {
            peak = Math.Max(peak, ReadHwm(statusPath));
            if (peak > memoryLimit) { overMemory = true; Kill(p); break; }
            if (clock.Elapsed.TotalSeconds > timeoutSeconds) { timedOut = true; Kill(p); break; }
            await Task.WhenAny(p.WaitForExitAsync(), Task.Delay(25));
        }
        await p.WaitForExitAsync();
        return new WhaleRun(args, p.ExitCode, await stdout, await stderr, clock.Elapsed.TotalSeconds, peak, timedOut, overMemory);
    }

    static void Kill(Process p) { try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { } }

    static long ReadHwm(string statusPath)
    {
        try
        {
            foreach (var line in File.ReadLines(statusPath))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return 0;
    }
}
