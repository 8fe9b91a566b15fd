// `mla-roofline`: one absorbed MLA decode step (T = 1, one layer, V2-Lite attention shapes, fp32) over batch ×
// context, against the machine's roofline measured in the same rounds (Roofline.cs: the copy and the GEMM are interleaved with the rows):
//   bytes  = every weight of the layer once + the latent cache read twice (once [c^KV | k^R] for the scores,
//            once c^KV for the values): 4·(params + B·S·(Dc+Dr) + B·S·Dc)
//   FLOPs  = 2·B·params (projections, the W_UK fold and W_UV unfold) + 2·H·B·S·(2·Dc + Dr) (scores + values)
// Absorbed decode reuses each cached element for all H heads, so the step turns compute-bound as B × S grows.
// The step gets its RoPE tables gathered beforehand (AttentionContext.Rotary), as inside DeepSeekLM, which gathers
// them once per forward for all layers. Rows: the explicit absorbed path and (batch ≤ 4) the fused-SDPA option, interleaved per point; median of the
// rounds, p10/p90, minor page faults per step. Two more rows per point run just the step's seven products
// (q_proj, kv_a_proj_with_mqa, the W_UK fold, scores, values, the W_UV unfold, o_proj) on ready inputs of the same
// shapes, with the layer's weights and cache, and nothing else: "gemms-only" through the kernels the step itself
// uses (Core/SmallGemm where it applies), "gemms-libtorch" through libtorch's BLAS (at B·H ≤ 256 query rows its
// products are small-M GEMMs, far from the 1024³ GEMM rate that sets the roofline). `vs_gemms_only` = row time ÷
// the gemms-only time: how much the step adds to its products. best_roofline_fraction judges the same time against the
// roofline with the faster of libtorch's and Core/PackedGemm's GEMM rate (best_bound: which term then dominates).
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
        result.With("shapes", shapes.Name).With("dtype", dtype.ToString()).With("rounds", rounds).With("few_rows", SmallGemm.FewRows.ToString().ToLowerInvariant());
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
                var latentCache = (MultiHeadLatentAttention.LatentCache)caches[0].Layers[0];
                var gemms = GemmsOnly(explicitLayer, shapes, latentCache, batch, context + 1, dtype, device, libtorch: false);
                var gemmsLibtorch = GemmsOnly(explicitLayer, shapes, latentCache, batch, context + 1, dtype, device, libtorch: true);
                var positions = torch.full(batch, 1, context, dtype: ScalarType.Int64, device: device);   // [B, 1]
                var bodies = layers.Select((l, i) =>
                {
                    var ctx = new AttentionContext
                    {
                        Positions = positions,
                        // The RoPE tables gathered once, as DeepSeekLM does once per forward for all its layers.
                        Rotary = l.Item2.Rope.Tables(positions),
                        Mask = AttentionContext.BuildMask(caches[i].KeyValid, context, 1),
                        Cache = caches[i],
                    };
                    return (Action)(() => l.Item2.forward(x, ctx));
                }).Append(gemms).Append(gemmsLibtorch).Concat(probe.Bodies).ToArray();
                var samples = Interleave.Run(device, bodies, warmup: 2, rounds: rounds);
                var limits = probe.From(samples);   // measured in the same rounds as the rows
                long S = context + 1;
                double bytes = elem * (paramCount + batch * S * (Dc + Dr) + batch * S * Dc);
                double flops = 2.0 * batch * paramCount + 2 * H * batch * S * (2 * Dc + Dr);
                double roof = limits.RooflineMs(bytes, flops), bestRoof = limits.WithBestGemm.RooflineMs(bytes, flops);
                var names = layers.Select(l => l.Item1).Append("gemms-only").Append("gemms-libtorch").ToArray();
                double ceilingMs = samples[layers.Length].Timing.MedianMs;
                for (int v = 0; v < names.Length; v++)
                {
                    var t = samples[v].Timing;
                    double fraction = roof / t.MedianMs;
                    result.AddRow($"{names[v]} b{batch}").With("batch", batch).With("context", context).With("bound", limits.Bound(bytes, flops))
                          .With("copy_gbps", Math.Round(limits.CopyGBps, 2)).With("gemm_gflops", Math.Round(limits.GemmGflops, 1))
                          .Add("median_ms", t.MedianMs, "ms").Add("p10_ms", t.P10Ms, "ms").Add("p90_ms", t.P90Ms, "ms")
                          .With("packed_gemm_gflops", Math.Round(limits.PackedGemmGflops, 1))
                          .Add("roofline_ms", roof, "ms").Add("roofline_fraction", fraction, "")
                          .With("best_bound", limits.WithBestGemm.Bound(bytes, flops)).Add("best_roofline_fraction", bestRoof / t.MedianMs, "")
                          .Add("gbps", bytes / (t.MedianMs / 1000) / 1e9, "GB/s").Add("gflops", flops / (t.MedianMs / 1000) / 1e9, "GFLOP/s")
                          .Add("page_faults_per_step", samples[v].MedianFaults, "").Add("vs_gemms_only", t.MedianMs / ceilingMs, "×");
                    Console.WriteLine($"  {names[v]} b{batch} S{context}: {t.MedianMs:F2} ms (p10 {t.P10Ms:F2}, p90 {t.P90Ms:F2}), roofline {roof:F2} ms ({limits.Bound(bytes, flops)}; copy {limits.CopyGBps:F0} GB/s, GEMM {limits.GemmGflops:F0} GFLOP/s) → {fraction:P0} ({bestRoof / t.MedianMs:P0} against the best GEMM, {limits.PackedGemmGflops:F0} GFLOP/s), {samples[v].MedianFaults:F0} faults");
                }
                foreach (var c in caches) c.Dispose();
            }
        return result;
    }

    /// <summary>The absorbed step's seven products alone, on inputs of their shapes made once (T = 1; S cached rows):
    /// through the step's own kernels, or (<paramref name="libtorch"/>) through libtorch's linear and bmm.</summary>
    static Action GemmsOnly(MultiHeadLatentAttention layer, AttentionShapes sh, MultiHeadLatentAttention.LatentCache cache, long batch, long S, ScalarType dtype, Device device, bool libtorch)
    {
        Func<Tensor, Tensor, Tensor> linear = libtorch ? (a, b) => nn.functional.linear(a, b) : (a, b) => SmallGemm.LinearOrTorch(a, b);
        Func<Tensor, Tensor, Tensor> bmm = libtorch ? (a, b) => a.bmm(b) : SmallGemm.BmmOrTorch;
        var w = layer.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        long H = sh.Heads, Dn = sh.NopeDim, Dr = sh.RopeDim, Dv = sh.VDim, Dc = sh.KvLoraRank, D = sh.Hidden;
        var kvb = w["kv_b_proj.weight"].view(H, Dn + Dv, Dc);                                   // [H, Dn+Dv, Dc]
        var wUK = kvb.narrow(1, 0, Dn);                                                          // [H, Dn, Dc]
        var wUVt = kvb.narrow(1, Dn, Dv).transpose(1, 2);                                        // [H, Dc, Dv]
        var x = torch.randn(batch, D, dtype: dtype, device: device);                             // [B, D]
        var qNope = torch.randn(H, batch, Dn, dtype: dtype, device: device);                     // [H, B, Dn]
        var q = torch.randn(batch, H, Dc + Dr, dtype: dtype, device: device);                    // [B, H, Dc+Dr]
        var keys = cache.KV.narrow(1, 0, S);                                                     // [B, S, Dc+Dr]
        var latent = keys.narrow(-1, 0, Dc);                                                     // [B, S, Dc]
        var probs = torch.rand(batch, H, S, dtype: dtype, device: device);                       // [B, H, S]
        var oLat = torch.randn(H, batch, Dc, dtype: dtype, device: device);                      // [H, B, Dc]
        var o = torch.randn(batch, H * Dv, dtype: dtype, device: device);                        // [B, H·Dv]
        // Query projections: q_proj, or q_a_proj then q_b_proj under query compression (V3)
        var qa = w.GetValueOrDefault("q_a_proj.weight");
        var qLatent = qa is null ? null : torch.randn(batch, qa.shape[0], dtype: dtype, device: device);   // [B, Dq]
        var wq = qa is null ? w["q_proj.weight"] : w["q_b_proj.weight"];
        var wkva = w["kv_a_proj_with_mqa.weight"];
        var wo = w["o_proj.weight"];
        return () =>
        {
            using var scope = torch.NewDisposeScope();
            if (qa is not null) linear(x, qa);                                                   // q_a_proj
            linear(qLatent ?? x, wq);                                                            // q_proj / q_b_proj
            linear(x, wkva);                                                                     // kv_a_proj_with_mqa
            bmm(qNope, wUK);                                                                     // fold
            bmm(q, keys.transpose(1, 2));                                                        // scores
            bmm(probs, latent);                                                                  // values
            bmm(oLat, wUVt);                                                                     // unfold
            linear(o, wo);                                                                       // o_proj
        };
    }
}
