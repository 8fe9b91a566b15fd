// `mla-roofline`: one absorbed MLA decode step (T = 1, one layer, V2-Lite attention shapes, fp32) over batch ×
// context, against the machine's roofline measured in the same rounds (Roofline.cs: the copy and the GEMM are interleaved with the rows):
//   bytes  = every weight of the layer once + the latent cache read twice (once [c^KV | k^R] for the scores,
//            once c^KV for the values): 4·(params + B·S·(Dc+Dr) + B·S·Dc)
//   FLOPs  = 2·B·params (projections, the W_UK fold and W_UV unfold) + 2·H·B·S·(2·Dc + Dr) (scores + values)
// Absorbed decode reuses each cached element for all H heads, so the step turns compute-bound as B × S grows.
// Rows: the explicit absorbed path and (batch ≤ 4) the fused-SDPA option, interleaved per point; median of the
// rounds, p10/p90, minor page faults per step.
using TorchSharp;
using WhaleTech.Attention;
using WhaleTech.Lab.Bench;
using WhaleTech.Core;
using WhaleTech.Lab.Mla;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Benchmarks;

public sealed class MlaRooflineSuite : ISuite
{
    public string Name => "mla-roofline";
    public string Description =>
        "Absorbed MLA decode step (1 layer, T = 1, V2-Lite shapes, fp32): median ms and fraction of the roofline " +
        "max(bytes ÷ copy bandwidth, FLOPs ÷ GEMM rate) measured in the same run; explicit path vs fused SDPA; page faults per step.";

    public BenchmarkResult Run(Device device, SuiteOptions options)
    {
        var shapes = AttentionShapes.V2Lite;
        long[] batches = options.Quick ? [1, 2] : [1, 4, 16];
        long[] contexts = options.Quick ? [64] : [1024, 4096];
        int rounds = options.Quick ? 3 : 9;
        var dtype = device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32;
        var result = new BenchmarkResult(Name, Description, MachineInfo.Collect(device)) { Plot = new PlotSpec("roofline_fraction", "context", LogX: true) };
        using var probe = new LimitProbe(device, options.Quick);
        result.With("shapes", shapes.Name).With("dtype", dtype.ToString()).With("rounds", rounds);
        int maxPositions = (int)contexts.Max() + 2;
        using var explicitLayer = (MultiHeadLatentAttention)DecodeBenchmark.BuildLayer(shapes, DecodeVariant.MlaAbsorbed, maxPositions, dtype, device);
        using var sdpaLayer = (MultiHeadLatentAttention)DecodeBenchmark.BuildLayer(shapes, DecodeVariant.MlaAbsorbedSdpa, maxPositions, dtype, device);
        using (torch.no_grad())   // same weights in both layers
            foreach (var ((_, a), (_, b)) in explicitLayer.named_parameters().Zip(sdpaLayer.named_parameters())) b.copy_(a);
        long paramCount = explicitLayer.parameters().Sum(p => p.numel());
        long elem = dtype == ScalarType.Float32 ? 4 : 2;
        double H = shapes.Heads, Dc = shapes.KvLoraRank, Dr = shapes.RopeDim;
        foreach (long batch in batches)
            foreach (long context in contexts)
            {
                using var scope = torch.NewDisposeScope();
                using var noGrad = torch.no_grad();
                var layers = batch <= 4 ? new[] { ("absorbed", explicitLayer), ("absorbed-sdpa", sdpaLayer) } : new[] { ("absorbed", explicitLayer) };
                var caches = layers.Select(l => DecodeBenchmark.FilledCache(l.Item2, batch, context, dtype, device)).ToArray();
                var x = torch.randn(batch, 1, shapes.Hidden, dtype: dtype, device: device);
                var bodies = layers.Select((l, i) =>
                {
                    var ctx = new AttentionContext
                    {
                        Positions = torch.full(batch, 1, context, dtype: ScalarType.Int64, device: device),
                        Mask = AttentionContext.BuildMask(caches[i].KeyValid, context, 1),
                        Cache = caches[i],
                    };
                    return (Action)(() => l.Item2.forward(x, ctx));
                }).Append(probe.Copy).Append(probe.Gemm).ToArray();
                var samples = Interleave.Run(device, bodies, warmup: 2, rounds: rounds);
                var limits = probe.From(samples[^2], samples[^1]);   // measured in the same rounds as the rows
                long S = context + 1;
                double bytes = elem * (paramCount + batch * S * (Dc + Dr) + batch * S * Dc);
                double flops = 2.0 * batch * paramCount + 2 * H * batch * S * (2 * Dc + Dr);
                double roof = limits.RooflineMs(bytes, flops);
                for (int v = 0; v < layers.Length; v++)
                {
                    var t = samples[v].Timing;
                    double fraction = roof / t.MedianMs;
                    result.AddRow($"{layers[v].Item1} b{batch}").With("batch", batch).With("context", context).With("bound", limits.Bound(bytes, flops))
                          .With("copy_gbps", Math.Round(limits.CopyGBps, 2)).With("gemm_gflops", Math.Round(limits.GemmGflops, 1))
                          .Add("median_ms", t.MedianMs, "ms").Add("p10_ms", t.P10Ms, "ms").Add("p90_ms", t.P90Ms, "ms")
                          .Add("roofline_ms", roof, "ms").Add("roofline_fraction", fraction, "")
                          .Add("gbps", bytes / (t.MedianMs / 1000) / 1e9, "GB/s").Add("gflops", flops / (t.MedianMs / 1000) / 1e9, "GFLOP/s")
                          .Add("page_faults_per_step", samples[v].MedianFaults, "");
                    Console.WriteLine($"  {layers[v].Item1} b{batch} S{context}: {t.MedianMs:F2} ms (p10 {t.P10Ms:F2}, p90 {t.P90Ms:F2}), roofline {roof:F2} ms ({limits.Bound(bytes, flops)}; copy {limits.CopyGBps:F0} GB/s, GEMM {limits.GemmGflops:F0} GFLOP/s) → {fraction:P0}, {samples[v].MedianFaults:F0} faults");
                }
                foreach (var c in caches) c.Dispose();
            }
        return result;
    }
}
