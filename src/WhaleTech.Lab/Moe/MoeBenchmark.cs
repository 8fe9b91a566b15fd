// Throughput of one DeepSeekMoE layer per dispatch path, against a dense SwiGLU of equal ACTIVE FLOPs
// (width (K + Ns) · moe_intermediate_size, the compute a token really uses), forward and forward+backward.
//
//   active FLOPs per token, forward  = 2 · 3 · D · F · (K + Ns)  +  2 · D · E (router)
//   forward + backward               = 3 × forward
// MFU needs a peak: pass the device's peak FLOP/s (e.g. 790e12 for H100 bf16 dense) or leave it null.
// Rows are returned for the caller to write as JSON/Markdown; nothing here asserts on speed.
// Shapes: N tokens, D hidden, E experts, K experts per token, F expert width, Ns shared experts.
using System.Diagnostics;
using TorchSharp;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

using WhaleTech.Moe;

using WhaleTech.Lab.Bench;

namespace WhaleTech.Lab.Moe;

public sealed record MoeBenchRow(string Variant, long Tokens, string Pass, double Milliseconds, double TokensPerSecond, double TflopPerSecond, double? Mfu, double MaxVio);

public static class MoeBenchmark
{
    /// <summary>Times each path at each token count (median of <paramref name="iterations"/> after warm-up).</summary>
    /// <param name="bias">Optional router bias [E] to impose imbalance (synthetic routing at a set MaxVio).</param>
    public static IReadOnlyList<MoeBenchRow> Run(ModelConfig config, IEnumerable<long> tokenCounts, IEnumerable<MoeDispatch> paths, Device device,
        ScalarType dtype = ScalarType.Float32, int warmup = 1, int iterations = 3, double? peakFlops = null, float[]? bias = null)
    {
        config.Validate();
        Guard.Positive("iterations", iterations);
        var rows = new List<MoeBenchRow>();
        torch.manual_seed(0);
        using var layer = new DeepSeekMoE(config, "bench.mlp", Linears.Standard(config.InitializerRange));
        layer.to(device).to(dtype);             // the router still computes in fp32 (Router.Route casts)
        if (bias is not null)
            using (torch.no_grad()) layer.gate.Bias.copy_(torch.tensor(bias, device: device));
        long d = config.HiddenSize, f = config.MoeIntermediateSize, k = config.NumExpertsPerTok!.Value, ns = config.NSharedExperts ?? 0, e = config.NRoutedExperts!.Value;
        double flopsPerToken = 6.0 * d * f * (k + ns) + 2.0 * d * e;
        using var dense = new Expert(d, (k + ns) * f, Linears.Standard(config.InitializerRange), "bench.dense");
        dense.to(device).to(dtype);
        layer.train();
        foreach (long n in tokenCounts)
        {
            using var x = torch.randn(n, d, dtype: dtype, device: device);
            double maxVio;
            using (torch.no_grad()) { using var y = layer.forward(x); maxVio = LoadMetrics.MaxVio(layer.LastCounts()!); }
            foreach (var path in paths)
            {
                layer.DispatchPath = path;
                foreach (bool backward in new[] { false, true })
                    rows.Add(Row(path.ToString(), n, backward, maxVio, () => Step(layer, x, backward), device, warmup, iterations, flopsPerToken, peakFlops));
            }
            foreach (bool backward in new[] { false, true })
                rows.Add(Row("dense SwiGLU (equal active FLOPs)", n, backward, 0, () => Step(dense, x, backward), device, warmup, iterations, flopsPerToken, peakFlops));
            layer.TakeStepCounts();
        }
        return rows;
    }

    static void Step(nn.Module<Tensor, Tensor> m, Tensor x, bool backward)
    {
        using var scope = torch.NewDisposeScope();
        if (!backward) { using var _ = torch.no_grad(); m.forward(x); return; }
        var xg = x.detach().requires_grad_(true);
        m.forward(xg).sum().backward();
        m.zero_grad();
    }

    static MoeBenchRow Row(string variant, long n, bool backward, double maxVio, Action step, Device device, int warmup, int iterations, double flopsPerToken, double? peak)
    {
        double ms = Measure.Run(device, step, warmup, iterations).MedianMs;          // the one timer (Bench/Measure.cs)
        double flops = flopsPerToken * n * (backward ? 3 : 1);
        double perSecond = flops / (ms / 1000);
        return new MoeBenchRow(variant, n, backward ? "fwd+bwd" : "fwd", ms, n / (ms / 1000), perSecond / 1e12, peak is { } p ? perSecond / p : null, maxVio);
    }
}
