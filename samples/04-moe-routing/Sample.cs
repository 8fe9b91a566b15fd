// Sample 04 — DeepSeekMoE routing (DeepSeekMoE §3; DeepSeek-V3 §2.1.2, eqs. 12–16).
// Each token gets a sigmoid affinity s_i to every routed expert; group-limited routing first keeps the
// topk_group groups whose two best (biased) scores sum highest, then the top-K experts inside them. The
// bias b_i only changes *which* experts are picked; the combine weights are the unbiased s_i of the
// picked experts, normalized and scaled. This sample routes 6 tokens and shows all of it.
using TorchSharp;
using WhaleTech.Model;
using WhaleTech.Moe;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Samples;

public static class S04MoeRouting
{
    public const string Title = "DeepSeekMoE routing: groups, top-K, and the bias that only selects";

    public static void Run(SampleContext ctx)
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(4);
        var cfg = ModelConfig.Tiny("mla", hidden: 32) with
        {
            NRoutedExperts = 8, NSharedExperts = 1, NumExpertsPerTok = 2, NGroup = 4, TopkGroup = 2, MoeIntermediateSize = 16, RoutedScalingFactor = 2.5,
        };
        var moe = new DeepSeekMoE(cfg.Validate(), "model.layers.1.mlp", Linears.Standard());
        var x = torch.randn(6, 32);                                                 // [N, D]
        void Show(string label)
        {
            using var routing = moe.gate.Route(x);
            ctx.Out.WriteLine(label);
            var idx = routing.Indices.data<long>().ToArray();
            var w = routing.Weights.to_type(ScalarType.Float32).data<float>().ToArray();
            for (int t = 0; t < 6; t++)
                ctx.Out.WriteLine($"  token {t}: experts {idx[2 * t]},{idx[2 * t + 1]} (groups {idx[2 * t] / 2},{idx[2 * t + 1] / 2}) weights {w[2 * t]:F3} + {w[2 * t + 1]:F3} = {w[2 * t] + w[2 * t + 1]:F3}");
        }
        Show("Without bias (weights sum to routed_scaling_factor = 2.5):");
        using (torch.no_grad()) moe.gate.Bias.copy_(torch.tensor(new float[] { 0, 0, 0, 0, 0, 0, 5, 5 }));   // push experts 6 and 7
        Show("With bias +5 on experts 6 and 7 (selection changes; weights still come from the unbiased scores):");
        var y = moe.forward(x);
        ctx.Out.WriteLine($"Output {string.Join("×", y.shape)}: shared expert + weighted routed experts. Parameter names: " +
                          string.Join(", ", moe.state_dict().Keys.Where(k => !k.StartsWith("experts.", StringComparison.Ordinal) || k.StartsWith("experts.0.", StringComparison.Ordinal))));
    }
}
