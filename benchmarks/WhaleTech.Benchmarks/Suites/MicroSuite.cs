// `micro`: CPU micro-benchmarks through BenchmarkDotNet (in-process, so libtorch is loaded once), for ops
// so small that per-call overhead — TorchSharp's P/Invoke, dispose scopes, allocation — is what we see.
// The BenchmarkDotNet measurements are turned into the same BenchmarkResult as every other suite.
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using WhaleTech.Lab.Bench;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Benchmarks;

public sealed class MicroSuite : ISuite
{
    public string Name => "micro";
    public string Description =>
        "BenchmarkDotNet CPU micro-benchmarks of small ops on a [B=32, D] activation: an RMSNorm written with " +
        "tensor ops, and allocating a zero tensor (median µs per call). Always runs on the CPU.";

    public BenchmarkResult Run(Device device, SuiteOptions options)
    {
        var job = Job.Default
            .WithToolchain(InProcessEmitToolchain.Instance)
            .WithLaunchCount(1)
            .WithWarmupCount(options.Quick ? 1 : 3)
            .WithIterationCount(options.Quick ? 3 : 15);
        var config = ManualConfig.CreateEmpty()
            .AddJob(job)
            .AddLogger(ConsoleLogger.Default)
            .AddColumnProvider(BenchmarkDotNet.Columns.DefaultColumnProviders.Instance)
            .WithArtifactsPath(Path.Combine(Path.GetTempPath(), "whale-benchmarkdotnet"))
            .WithOptions(ConfigOptions.DisableOptimizationsValidator | ConfigOptions.DisableLogFile);
        var summary = BenchmarkRunner.Run<TensorMicroBenchmarks>(config);

        var result = new BenchmarkResult(Name, Description, MachineInfo.Collect(CPU))
        {
            Plot = new PlotSpec("median_us", "D", LogX: true),
        };
        result.With("device", "cpu");
        foreach (var report in summary.Reports)
        {
            var perCallMs = report.AllMeasurements
                .Where(m => m.IterationMode == IterationMode.Workload && m.IterationStage == IterationStage.Result)
                .Select(m => m.Nanoseconds / m.Operations / 1e6)
                .ToList();
            if (perCallMs.Count == 0)
                throw new WhaleException($"BenchmarkDotNet produced no measurements for {report.BenchmarkCase.DisplayInfo}; see the log above.");
            var t = Timing.FromSamples(perCallMs);
            var row = result.AddRow(report.BenchmarkCase.Descriptor.WorkloadMethod.Name);
            foreach (var p in report.BenchmarkCase.Parameters.Items) row.With(p.Name, p.Value);
            row.Add("median_us", t.MedianMs * 1000, "µs").Add("p10_us", t.P10Ms * 1000, "µs")
               .Add("p90_us", t.P90Ms * 1000, "µs").Add("min_us", t.MinMs * 1000, "µs");
        }
        return result;
    }
}

/// <summary>The BenchmarkDotNet class (public and unsealed, as BenchmarkDotNet requires).</summary>
public class TensorMicroBenchmarks
{
    [BenchmarkDotNet.Attributes.Params(64, 1024)]
    public int D { get; set; }

    Tensor _x = null!, _weight = null!;

    [BenchmarkDotNet.Attributes.GlobalSetup]
    public void Setup()
    {
        Backend.Initialize();
        _x = randn(32, D);          // [B, D]
        _weight = ones(D);          // [D]
    }

    [BenchmarkDotNet.Attributes.GlobalCleanup]
    public void Cleanup() { _x.Dispose(); _weight.Dispose(); }

    /// <summary>y = x / sqrt(mean(x², -1) + ε) · w, as four tensor ops (fp32).</summary>
    [BenchmarkDotNet.Attributes.Benchmark]
    public void RmsNorm()
    {
        using var scope = NewDisposeScope();
        var ms = _x.pow(2).mean([-1], keepdim: true);          // [B, 1]
        _ = _x * rsqrt(ms + 1e-6) * _weight;                     // [B, D]
    }

    [BenchmarkDotNet.Attributes.Benchmark]
    public void Zeros()
    {
        using var scope = NewDisposeScope();
        _ = zeros(32, D);                                        // [B, D]
    }
}
