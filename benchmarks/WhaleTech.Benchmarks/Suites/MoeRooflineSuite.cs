// `moe-roofline`: one DeepSeekMoE layer (hidden 512, 64 routed experts of width 128, top-6, 2 shared, fp32) at
// 4,096 tokens, forward (no_grad) and forward+backward, per dispatch path, against the machine's GEMM rate and
// roofline measured in the same rounds (Roofline.cs: the copy and the GEMM are interleaved with the rows):
//   FLOPs  = N · (6·D·F·(K + Ns) + 2·D·E)           (active expert FLOPs + the router), × 3 for forward+backward
//   bytes  = 4 · (all weights + x + y)               (× 3 for forward+backward: weights, grads, activations)
// gemm_fraction = achieved FLOP/s ÷ GEMM rate ("fraction of the GEMM rate"); a dense SwiGLU of equal
// active FLOPs is the same-shape reference, and the layer's own products alone (GEMMs only, libtorch mm) show how
// much of the gap is the GEMMs' shapes and how much everything around them (through libtorch's mm, and through
// Core/PackedGemm as the CPU training nodes run them). best_gemm_fraction divides by the faster of libtorch's and
// PackedGemm's 2048³ rate measured in the same rounds. The backward is seeded with a fixed
// dense gradient, as inside a model. Variants are interleaved per round; median, p10/p90, page faults.
using TorchSharp;
using WhaleTech.Lab.Bench;
using WhaleTech.Core;
using WhaleTech.Model;
using WhaleTech.Moe;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Benchmarks;

public sealed class MoeRooflineSuite : ISuite
{
    public string Name => "moe-roofline";
    public string Description =>
        "DeepSeekMoE layer (D 512, 64 experts × F 128, top-6, 2 shared, fp32) forward and forward+backward per dispatch path: " +
        "median ms and fraction of the GEMM rate / roofline measured in the same run; page faults per call.";

    public BenchmarkResult Run(Device device, SuiteOptions options)
    {
        var cfg = (ModelConfig.Tiny("mla", hidden: options.Quick ? 64 : 512) with
        {
            NRoutedExperts = options.Quick ? 8 : 64, MoeIntermediateSize = options.Quick ? 16 : 128, NumExpertsPerTok = options.Quick ? 2 : 6,
            NSharedExperts = 2, NGroup = 1, TopkGroup = 1,
        }).Validate();
        long n = options.Quick ? 256 : 4096;
        int rounds = options.Quick ? 3 : 7;
        var result = new BenchmarkResult(Name, Description, MachineInfo.Collect(device)) { Plot = new PlotSpec("gemm_fraction", "pass") };
        using var probe = new LimitProbe(device, options.Quick);
        long d = cfg.HiddenSize, f = cfg.MoeIntermediateSize, k = cfg.NumExpertsPerTok!.Value, ns = cfg.NSharedExperts ?? 0, e = cfg.NRoutedExperts!.Value;
        result.With("hidden", d).With("experts", e).With("width", f).With("top_k", k).With("shared", ns).With("tokens", n).With("rounds", rounds);
        torch.manual_seed(0);
        using var layer = new DeepSeekMoE(cfg, "bench.mlp", Linears.Standard(cfg.InitializerRange));
        layer.to(device);
        layer.train();   // the router counts; dispatch is the same in eval
        using var dense = new Expert(d, (k + ns) * f, Linears.Standard(cfg.InitializerRange), "bench.dense");
        dense.to(device);
        using var x = torch.randn(n, d, device: device);
        using var dy = torch.randn(n, d, device: device);   // [N, D] the gradient from the layer above
        long paramCount = layer.parameters().Sum(p => p.numel());
        double flopsFwd = n * (6.0 * d * f * (k + ns) + 2.0 * d * e);
        double bytesFwd = 4.0 * (paramCount + 2 * n * d);
        var paths = new[] { MoeDispatch.Sorted, MoeDispatch.GroupedMm, MoeDispatch.PaddedBmm, MoeDispatch.ExpertLoop };
        foreach (bool backward in new[] { false, true })
        {
            var names = paths.Select(p => p.ToString()).Append("dense SwiGLU (equal active FLOPs)").Append("GEMMs only (the layer's products)")
                             .Append("GEMMs only, PackedGemm").ToArray();
            var bodies = paths.Select(p => (Action)(() => { layer.DispatchPath = p; Step(layer, x, dy, backward); }))
                              .Append(() => Step(dense, x, dy, backward)).Append(GemmsOnly(layer, x, backward, packed: false))
                              .Append(GemmsOnly(layer, x, backward, packed: true)).Concat(probe.Bodies).ToArray();
            var samples = Interleave.Run(device, bodies, warmup: 1, rounds: rounds);
            var limits = probe.From(samples);   // measured in the same rounds as the rows
            Console.WriteLine($"  {(backward ? "fwd+bwd" : "fwd")} rounds: copy {limits.CopyGBps:F1} GB/s, GEMM {limits.GemmGflops:F1} GFLOP/s (libtorch), {limits.PackedGemmGflops:F1} (PackedGemm)");
            double flops = flopsFwd * (backward ? 3 : 1), bytes = bytesFwd * (backward ? 3 : 1);
            double roof = limits.RooflineMs(bytes, flops);
            double best = samples.Take(paths.Length).Min(s => s.Timing.MedianMs);
            string pass = backward ? "fwd+bwd" : "fwd";
            for (int v = 0; v < names.Length; v++)
            {
                var t = samples[v].Timing;
                double gflops = flops / (t.MedianMs / 1000) / 1e9;
                result.AddRow($"{names[v]}").With("pass", pass).With("tokens", n)
                      .With("copy_gbps", Math.Round(limits.CopyGBps, 2)).With("gemm_gflops", Math.Round(limits.GemmGflops, 1))
                      .With("packed_gemm_gflops", Math.Round(limits.PackedGemmGflops, 1))
                      .Add("median_ms", t.MedianMs, "ms").Add("p10_ms", t.P10Ms, "ms").Add("p90_ms", t.P90Ms, "ms")
                      .Add("gflops", gflops, "GFLOP/s").Add("gemm_fraction", gflops / limits.GemmGflops, "")
                      .Add("best_gemm_fraction", gflops / limits.BestGemmGflops, "")
                      .Add("roofline_fraction", roof / t.MedianMs, "").Add("vs_best_dispatch", t.MedianMs / best, "×")
                      .Add("tokens_per_s", n / (t.MedianMs / 1000), "tokens/s").Add("page_faults", samples[v].MedianFaults, "");
                Console.WriteLine($"  {names[v]} {pass}: {t.MedianMs:F1} ms (p10 {t.P10Ms:F1}, p90 {t.P90Ms:F1}), {gflops:F1} GFLOP/s = {gflops / limits.GemmGflops:P0} of libtorch's GEMM, {gflops / limits.BestGemmGflops:P0} of the best, {t.MedianMs / best:F2}× best, {samples[v].MedianFaults:F0} faults");
            }
        }
        layer.TakeStepCounts();
        return result;
    }

    /// <summary>The layer's matrix products alone, through libtorch's mm (or <paramref name="packed"/>: Core/PackedGemm, as the
    /// CPU float32 training nodes run them), on inputs of
    /// their shapes made once: the router, per routed expert (its token count from routing x) gate, up and down, the
    /// shared expert; with <paramref name="backward"/> also each product's two gradient GEMMs (input and weight), so the
    /// FLOPs equal the layer's. What Sorted would reach if gathering, scattering, the SwiGLU's elementwise ops and
    /// autograd cost nothing.</summary>
    static Action GemmsOnly(DeepSeekMoE layer, Tensor x, bool backward, bool packed)
    {
        long n = x.shape[0], d = x.shape[1];
        long[] counts;
        using (torch.no_grad()) using (var routing = layer.gate.Route(x)) counts = Dispatch.Counts(routing.Indices, layer.NumExperts);
        var weights = new List<(Tensor W, long Rows)>();                       // (weight [out, in], rows of its input)
        Tensor Weight(nn.Module<Tensor, Tensor> m) => m.get_parameter("weight")!.detach();
        weights.Add((layer.gate.weight.detach(), n));
        for (int e = 0; e < layer.NumExperts; e++)
            if (counts[e] > 0)
                foreach (var m in new[] { layer.experts[e].gate_proj, layer.experts[e].up_proj, layer.experts[e].down_proj }) weights.Add((Weight(m), counts[e]));
        if (layer.shared_experts is { } sh)
            foreach (var m in new[] { sh.gate_proj, sh.up_proj, sh.down_proj }) weights.Add((Weight(m), n));
        var inputs = weights.Select(w => torch.randn(w.Rows, w.W.shape[1], device: x.device)).ToArray();   // [rows, in]
        var grads = weights.Select(w => torch.randn(w.Rows, w.W.shape[0], device: x.device)).ToArray();    // [rows, out]
        Func<Tensor, Tensor, Tensor> mm = packed ? (a, b) => PackedGemm.Mm(a, b) ?? a.mm(b) : (a, b) => a.mm(b);
        return () =>
        {
            using var noGrad = torch.no_grad();
            for (int i = 0; i < weights.Count; i++)
            {
                using var scope = torch.NewDisposeScope();
                mm(inputs[i], weights[i].W.t());                              // forward      [rows, out]
                if (!backward) continue;
                mm(grads[i], weights[i].W);                                   // grad input   [rows, in]
                mm(grads[i].t(), inputs[i]);                                  // grad weight  [out, in]
            }
        };
    }

    /// <summary>One forward, or forward+backward seeded with <paramref name="dy"/>: a dense [N, D] gradient, as a layer
    /// in a model gets from the layer above (a sum()'s gradient would arrive as a stride-0 expansion that every
    /// path first copies into a dense tensor).</summary>
    static void Step(nn.Module<Tensor, Tensor> m, Tensor x, Tensor dy, bool backward)
    {
        if (!backward) { using var _ = torch.no_grad(); m.forward(x); return; }
        var xg = x.detach().requires_grad_(true);
        m.forward(xg).backward([dy]);
        m.zero_grad();
    }
}
