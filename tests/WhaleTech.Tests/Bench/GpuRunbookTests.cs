// CI for the GPU runbook: tools/gpu/run-all.sh --dry-run runs every step of the GPU call on the CPU with tiny shapes,
// through the built outputs (the test project builds the benchmarks program for this), so a broken step is found
// here instead of on the one H200 call a session gets.
using System.Diagnostics;

namespace WhaleTech.Tests.Bench;

public class GpuRunbookTests : IDisposable
{
    readonly string _out = Directory.CreateTempSubdirectory("whale-runall-").FullName;
    public void Dispose() { try { Directory.Delete(_out, true); } catch (IOException) { } }

    static string RepositoryRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "WhaleTech.sln"))) return d.FullName;
        throw new InvalidOperationException("WhaleTech.sln not found above " + AppContext.BaseDirectory);
    }

    [Fact]
    public async Task DryRunRunsEveryStepOnTheCpu()
    {
        if (!OperatingSystem.IsLinux()) return;   // a bash runbook for the Linux GPU machine
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = RepositoryRoot() };
        psi.ArgumentList.Add("tools/gpu/run-all.sh");
        psi.ArgumentList.Add("--dry-run");
        psi.Environment["OUT"] = _out;
#if DEBUG
        psi.Environment["RUNALL_CONFIGURATION"] = "Debug";
#else
        psi.Environment["RUNALL_CONFIGURATION"] = "Release";
#endif
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(15));
        await p.WaitForExitAsync(timeout.Token);   // throws when the dry run takes more than 15 minutes (≈ 1–2 when the machine is idle)
        string summary = File.ReadAllText(Path.Combine(_out, "summary.md"));
        Assert.True(p.ExitCode == 0, $"run-all.sh --dry-run exited {p.ExitCode}:\n{summary}\n{await stdout}\n{await stderr}");
        foreach (var step in new[] { "info", "hf-parity", "mla-roofline", "moe-roofline", "mla-decode", "moe", "generate", "fp8", "fp8-sweep",
                                     "decode", "rollout", "speculative", "matmul", "mla-bench", "memory" })
            Assert.Contains($"| {step} |", summary);
        Assert.DoesNotContain("skipped", summary);   // the dry run fits its budget: every step really ran
        Assert.True(File.Exists(Path.Combine(_out, "results.tgz")));
        Assert.True(Directory.GetFiles(_out).Length <= 8, "the device tool brings back at most 8 files");
    }
}
