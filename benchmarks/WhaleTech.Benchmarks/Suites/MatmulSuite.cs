// `matmul`: the two numbers that bound everything else on a device —
//   dense matmul throughput  [n,n] @ [n,n] costs 2·n³ FLOPs          → TFLOP/s, fp32 and bf16;
//   memory bandwidth         dst.copy_(src) reads and writes S bytes → GB/s = 2·S / t.
// A model's prefill is bounded by the first, its decode step by the second (DeepSeek-V3 §3, MLA's point
// is to shrink what decode must read). Placeholder suite until the decode suite lands.
using TorchSharp;
using WhaleTech.Lab.Bench;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Benchmarks;

public sealed class MatmulSuite : ISuite
{
    public string Name => "matmul";
    public string Description =>
        "Square matmul throughput (TFLOP/s = 2·n³ / median time) in fp32 and bf16, and device-to-device copy " +
        "bandwidth (GB/s = 2·bytes / median time, read + write).";

    public BenchmarkResult Run(Device device, SuiteOptions options)
    {
        bool cuda = device.type == DeviceType.CUDA;
        int[] sizes = (cuda, options.Quick) switch
        {
            (true, false) => [1024, 2048, 4096, 8192],
            (true, true) => [1024, 2048],
            (false, false) => [128, 256, 512, 1024],
            (false, true) => [128, 256],
        };
        int[] copyMiB = (cuda, options.Quick) switch
        {
            (true, false) => [64, 256, 1024],
            (false, false) => [16, 64, 256],
            _ => [16],
        };

        var result = new BenchmarkResult(Name, Description, MachineInfo.Collect(device))
        {
            Plot = new PlotSpec("tflops", "n", LogX: true),
        };
        foreach (var (variant, dtype) in new[] { ("fp32", ScalarType.Float32), ("bf16", ScalarType.BFloat16) })
            foreach (int n in sizes)
            {
                using var a = randn(n, n, dtype: dtype, device: device);   // [n, n]
                using var b = randn(n, n, dtype: dtype, device: device);   // [n, n]
                var t = Measure.Run(device, () => a.matmul(b), options.Warmup, options.Repetitions);
                double flops = 2.0 * n * n * n;
                result.AddRow(variant).With("n", n)
                      .Add("tflops", flops / t.MedianSeconds / 1e12, "TFLOP/s")
                      .AddTiming(t);
                Console.WriteLine($"  matmul {variant} n={n}: {flops / t.MedianSeconds / 1e12:F3} TFLOP/s, {t}");
            }

        foreach (int mib in copyMiB)
        {
            long floats = mib * 1024L * 1024 / sizeof(float);
            using var src = randn(floats, device: device);                 // [S/4]
            using var dst = empty_like(src);
            var t = Measure.Run(device, () => dst.copy_(src), options.Warmup, options.Repetitions);
            double bytes = 2.0 * floats * sizeof(float);
            result.AddRow("copy").With("mib", mib)
                  .Add("gbps", bytes / t.MedianSeconds / 1e9, "GB/s")
                  .AddTiming(t);
            Console.WriteLine($"  copy {mib} MiB: {bytes / t.MedianSeconds / 1e9:F2} GB/s, {t}");
        }
        return result;
    }
}
