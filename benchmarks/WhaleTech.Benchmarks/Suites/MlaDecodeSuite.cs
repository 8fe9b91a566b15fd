// `mla-decode`: one decode step of one attention layer at DeepSeek shapes (V2-Lite on CPU, V3 on CUDA) for
// MHA, GQA-8, MQA, MLA naive and MLA absorbed over batch × context, with the KV-cache bytes read per step and
// the achieved GB/s (see Attention/DecodeBenchmark.cs).
using WhaleTech.Attention;
using TorchSharp;
using WhaleTech.Lab.Bench;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Lab.Mla;

namespace WhaleTech.Benchmarks;

public sealed class MlaDecodeSuite : ISuite
{
    public string Name => "mla-decode";
    public string Description => "One-layer decode step: median ms, tokens/s and KV-cache GB/s for MHA, GQA-8, MQA, MLA naive and MLA absorbed.";

    public BenchmarkResult Run(Device device, SuiteOptions options)
    {
        var grid = device.type == DeviceType.CUDA ? DecodeGrid.CudaV3 : DecodeGrid.CpuDefault;
        if (options.Quick) grid = grid with { Batches = [1], Contexts = [256] };
        var result = new BenchmarkResult(Name, Description, MachineInfo.Collect(device)) { Plot = new PlotSpec("tokens_per_s", "context", LogX: true) };
        result.With("shapes", grid.Shapes.Name).With("copy_gbps", DecodeBenchmark.CopyBandwidthGBps(device));
        foreach (var r in DecodeBenchmark.Run(device, grid))
        {
            if (r.Skipped is not null) continue;
            result.AddRow($"{r.Variant} b{r.Batch}").With("batch", r.Batch).With("context", r.Context).With("dtype", r.Dtype)
                  .Add("tokens_per_s", r.TokensPerSecond, "tokens/s").Add("median_ms", r.MedianMs, "ms").Add("kv_gbps", r.KvGBps, "GB/s");
            Console.WriteLine($"  {r.Variant} batch={r.Batch} context={r.Context}: {r.MedianMs:F3} ms, {r.KvGBps:F1} GB/s");
        }
        return result;
    }
}
