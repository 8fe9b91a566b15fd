// `moe`: DeepSeekMoE layer forward and forward+backward throughput per dispatch path (token loop omitted:
// it is the reading reference), against a dense SwiGLU of equal active FLOPs, balanced and with a router
// bias that imposes imbalance. CPU: a scaled-down V2-Lite-like layer; CUDA: the V2-Lite layer of issue 4
// (d_model 2048, 64 routed experts of width 1408, top-6, 2 shared, bf16).
using TorchSharp;
using WhaleTech.Lab.Bench;
using WhaleTech.Model;
using WhaleTech.Moe;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;
using WhaleTech.Lab.Moe;

namespace WhaleTech.Benchmarks;

public sealed class MoeSuite : ISuite
{
    public string Name => "moe";
    public string Description =>
        "DeepSeekMoE layer tokens/s per dispatch path (sorted, torch._grouped_mm, padded bmm, per-expert loop) and a dense SwiGLU of equal active FLOPs; " +
        "'imbalanced' rows add a router bias of +2 on a quarter of the experts; 'imbalance sweep' rows raise that bias step by step " +
        "(sorted path, forward+backward, largest token count) to show how throughput falls as MaxVio grows.";

    public BenchmarkResult Run(Device device, SuiteOptions options)
    {
        bool cuda = device.type == DeviceType.CUDA;
        var cfg = (cuda
            ? ModelConfig.Tiny("mla", hidden: 2048) with { NRoutedExperts = 64, MoeIntermediateSize = 1408, NumExpertsPerTok = 6, NSharedExperts = 2 }
            : ModelConfig.Tiny("mla", hidden: 256) with { NRoutedExperts = 16, MoeIntermediateSize = 176, NumExpertsPerTok = 4, NSharedExperts = 1 }).Validate();
        long[] tokens = options.Quick ? [256] : cuda ? [4096, 65536] : [512, 2048];
        var paths = new[] { MoeDispatch.Sorted, MoeDispatch.GroupedMm, MoeDispatch.PaddedBmm, MoeDispatch.ExpertLoop };
        var dtype = cuda ? ScalarType.BFloat16 : ScalarType.Float32;
        var result = new BenchmarkResult(Name, Description, MachineInfo.Collect(device)) { Plot = new PlotSpec("tokens_per_s", "tokens", LogX: true) };
        int experts = cfg.NRoutedExperts!.Value;
        var skew = Enumerable.Range(0, experts).Select(e => e < experts / 4 ? 2f : 0f).ToArray();
        foreach (var (label, bias) in new[] { ("balanced", (float[]?)null), ("imbalanced", skew) })
            foreach (var row in MoeBenchmark.Run(cfg, tokens, paths, device, dtype, warmup: 1, iterations: options.Quick ? 2 : 5, bias: bias))
            {
                result.AddRow($"{row.Variant} {row.Pass}").With("routing", label).With("tokens", row.Tokens)
                      .Add("tokens_per_s", row.TokensPerSecond, "tokens/s").Add("median_ms", row.Milliseconds, "ms")
                      .Add("tflops", row.TflopPerSecond, "TFLOP/s").Add("maxvio", row.MaxVio, "");
                Console.WriteLine($"  moe {row.Variant} {row.Pass} {label} tokens={row.Tokens}: {row.TokensPerSecond:F0} tokens/s, MaxVio {row.MaxVio:F2}");
            }
        // Imbalance sweep: the same layer with a growing bias on a quarter of the experts → growing MaxVio.
        float[] levels = options.Quick ? [0f, 1f] : [0f, 0.05f, 0.1f, 0.2f, 0.5f, 1f, 2f];
        foreach (float level in levels)
        {
            var sweepBias = Enumerable.Range(0, experts).Select(e => e < experts / 4 ? level : 0f).ToArray();
            foreach (var row in MoeBenchmark.Run(cfg, [tokens[^1]], [MoeDispatch.Sorted], device, dtype, warmup: 1, iterations: options.Quick ? 2 : 5, bias: sweepBias)
                         .Where(r => r.Pass == "fwd+bwd" && r.Variant == nameof(MoeDispatch.Sorted)))
            {
                result.AddRow("imbalance sweep (Sorted fwd+bwd)").With("routing", $"bias +{level:0.##}").With("tokens", row.Tokens)
                      .Add("tokens_per_s", row.TokensPerSecond, "tokens/s").Add("median_ms", row.Milliseconds, "ms")
                      .Add("tflops", row.TflopPerSecond, "TFLOP/s").Add("maxvio", row.MaxVio, "");
                Console.WriteLine($"  moe imbalance sweep bias +{level:0.##}: MaxVio {row.MaxVio:F2}, {row.TokensPerSecond:F0} tokens/s");
            }
        }
        return result;
    }
}
