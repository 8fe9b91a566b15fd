// The machine's limits, measured in the same run as the rows they judge:
//   copy bandwidth  dst.copy_(src) of 256 MiB fp32, bytes read + bytes written per second (a streaming roof);
//   GEMM rate       fp32 torch.mm of 2048 × 2048 × 2048 (libtorch's BLAS at the configured thread count);
//   packed GEMM     the same product through Core/PackedGemm (WhaleTech's AVX-512 kernel; libtorch's BLAS runs AVX2
//                   kernels on the reference AMD EPYC, about half of what its 512-bit FMAs give), on the CPU only.
// A row's roofline time is max(bytes moved ÷ copy bandwidth, FLOPs ÷ GEMM rate); its fraction of the roofline is
// roofline time ÷ measured time (1 = at the limit). Rows report it against libtorch's GEMM rate (the reference the
// targets were set with) and, as best_*, against the faster of the two GEMMs. Page faults are minor faults (minflt, field 10 of
// /proc/self/stat) counted around each timed call: a first touch of a fresh 4 KiB page costs a fault and the kernel's zeroing of the page.
//
// LimitProbe makes the copy and the GEMM two more bodies of an interleaved run, so the limits a row is judged
// against are measured in the very rounds that measured the row (on a shared machine both drift together).
//
// Interleave runs every variant once per round, for several rounds, so drift from other jobs on a shared machine
// hits all variants alike; each variant's statistics are its median and p10/p90 over the rounds.
using System.Diagnostics;
using TorchSharp;
using WhaleTech.Lab.Bench;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Benchmarks;

/// <summary>The machine's copy bandwidth (GB/s, read + write) and fp32 GEMM rate (GFLOP/s), measured now.</summary>
public sealed record MachineLimits(double CopyGBps, double GemmGflops, double PackedGemmGflops = 0)
{
    /// <summary>The faster of libtorch's GEMM and WhaleTech's packed GEMM (GFLOP/s).</summary>
    public double BestGemmGflops => Math.Max(GemmGflops, PackedGemmGflops);

    /// <summary>These limits with the best GEMM as the GEMM rate (for the best_* columns).</summary>
    public MachineLimits WithBestGemm => this with { GemmGflops = BestGemmGflops };

    public static MachineLimits Measure(Device device, bool quick)
    {
        Backend.Initialize();
        using var scope = torch.NewDisposeScope();
        long bytes = (quick ? 32L : 256L) << 20;
        var src = torch.ones(bytes / 4, dtype: ScalarType.Float32, device: device);
        var dst = torch.empty_like(src);
        dst.copy_(src);   // touch every page once before timing
        double copyMs = Median(device, quick ? 3 : 9, () => dst.copy_(src));
        long n = quick ? 512 : 2048;
        var a = torch.randn(n, n, device: device);
        var b = torch.randn(n, n, device: device);
        double mmMs = Median(device, quick ? 3 : 7, () => { using var r = a.mm(b); });
        return new MachineLimits(2.0 * bytes / (copyMs / 1000) / 1e9, 2.0 * n * n * n / (mmMs / 1000) / 1e9);
    }

    /// <summary>Roofline time in ms of a step that moves <paramref name="bytes"/> and does <paramref name="flops"/>.</summary>
    public double RooflineMs(double bytes, double flops) => Math.Max(bytes / (CopyGBps * 1e9), flops / (GemmGflops * 1e9)) * 1000;

    /// <summary>"memory" or "compute": which term of the roofline is larger.</summary>
    public string Bound(double bytes, double flops) => bytes / (CopyGBps * 1e9) >= flops / (GemmGflops * 1e9) ? "memory" : "compute";

    public void Record(BenchmarkResult result) => result.With("copy_gbps", Math.Round(CopyGBps, 2)).With("gemm_gflops", Math.Round(GemmGflops, 1));

    static double Median(Device device, int reps, Action body)
    {
        body();
        Backend.Synchronize(device);
        var t = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            long start = Stopwatch.GetTimestamp();
            body();
            Backend.Synchronize(device);
            t[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        Array.Sort(t);
        return t[reps / 2];
    }
}

/// <summary>The copy and GEMM of <see cref="MachineLimits"/> as bodies for <see cref="Interleave.Run"/>.</summary>
public sealed class LimitProbe : IDisposable
{
    readonly Tensor _src, _dst, _a, _b;
    readonly long _bytes, _n;

    public LimitProbe(Device device, bool quick)
    {
        Backend.Initialize();
        _bytes = (quick ? 32L : 256L) << 20;
        _n = quick ? 512 : 2048;
        _src = torch.ones(_bytes / 4, dtype: ScalarType.Float32, device: device).DetachFromDisposeScope();
        _dst = torch.empty_like(_src).DetachFromDisposeScope();
        _dst.copy_(_src);   // touch every page once
        _a = torch.randn(_n, _n, device: device).DetachFromDisposeScope();
        _b = torch.randn(_n, _n, device: device).DetachFromDisposeScope();
    }

    public Action Copy => () => _dst.copy_(_src);
    public Action Gemm => () => { using var r = _a.mm(_b); };
    /// <summary>The GEMM through Core/PackedGemm (libtorch's where the kernel does not apply, e.g. on CUDA).</summary>
    public Action PackedGemm => () => { using var r = WhaleTech.Core.PackedGemm.Mm(_a, _b) ?? _a.mm(_b); };

    /// <summary>The probe's three bodies, to append to an interleaved run's (then <see cref="From(InterleavedSamples[])"/>).</summary>
    public Action[] Bodies => [Copy, Gemm, PackedGemm];

    /// <summary>The limits from the probe's samples (medians).</summary>
    public MachineLimits From(InterleavedSamples copy, InterleavedSamples gemm)
        => new(2.0 * _bytes / (copy.Timing.MedianMs / 1000) / 1e9, Gflops(gemm));

    /// <summary>The limits from the samples of <see cref="Bodies"/>, the last three of <paramref name="samples"/>.</summary>
    public MachineLimits From(InterleavedSamples[] samples)
        => From(samples[^3], samples[^2]) with { PackedGemmGflops = Gflops(samples[^1]) };

    double Gflops(InterleavedSamples gemm) => 2.0 * _n * _n * _n / (gemm.Timing.MedianMs / 1000) / 1e9;

    public void Dispose() { _src.Dispose(); _dst.Dispose(); _a.Dispose(); _b.Dispose(); }
}

/// <summary>Minor page faults of this process (Linux /proc/self/stat field 10; 0 elsewhere).</summary>
public static class PageFaults
{
    public static long Minor()
    {
        try
        {
            string stat = File.ReadAllText("/proc/self/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');   // fields from 3 (state) on
            return long.Parse(fields[10 - 3]);
        }
        catch (IOException) { return 0; }
        catch (UnauthorizedAccessException) { return 0; }
    }
}

/// <summary>One variant's samples: times (ms) and minor faults per call.</summary>
public sealed class InterleavedSamples
{
    public List<double> Ms { get; } = new();
    public List<double> Faults { get; } = new();
    public Timing Timing => Timing.FromSamples(Ms);
    public double MedianFaults => Timing.FromSamples(Faults).MedianMs;   // the same median, on fault counts
}

public static class Interleave
{
    /// <summary>Runs each body <paramref name="warmup"/> times, then <paramref name="rounds"/> rounds of one timed call
    /// of every body in turn (each in its own dispose scope, device synchronized before the clock is read).</summary>
    public static InterleavedSamples[] Run(Device device, IReadOnlyList<Action> bodies, int warmup, int rounds)
    {
        var samples = bodies.Select(_ => new InterleavedSamples()).ToArray();
        foreach (var body in bodies)
            for (int i = 0; i < warmup; i++) { using var s = torch.NewDisposeScope(); body(); }
        Backend.Synchronize(device);
        for (int r = 0; r < rounds; r++)
            for (int v = 0; v < bodies.Count; v++)
            {
                using var scope = torch.NewDisposeScope();
                Backend.Synchronize(device);
                long faults = PageFaults.Minor();
                long start = Stopwatch.GetTimestamp();
                bodies[v]();
                Backend.Synchronize(device);
                samples[v].Ms.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                samples[v].Faults.Add(PageFaults.Minor() - faults);
            }
        return samples;
    }
}
