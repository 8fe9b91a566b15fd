using TorchSharp;
using WhaleTech.Model;
using WhaleTech.Moe;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Tests.Moe;

static class MoeTestUtil
{
    /// <summary>A tiny MoE config: D=16, E=8 experts of width 12 in 4 groups, top-2 of 2 groups, 1 shared expert.</summary>
    public static ModelConfig Config(int experts = 8, int topK = 2, int groups = 4, int topkGroup = 2, string scoring = "sigmoid",
        string method = "noaux_tc", bool norm = true, double scale = 2.5, int shared = 1, int hidden = 16) => ModelConfig.Tiny(hidden: hidden) with
    {
        NRoutedExperts = experts, NumExpertsPerTok = topK, NGroup = groups, TopkGroup = topkGroup, ScoringFunc = scoring,
        TopkMethod = method, NormTopkProb = norm, RoutedScalingFactor = scale, NSharedExperts = shared, MoeIntermediateSize = 12,
        InitializerRange = 0.2,
    };

    /// <summary>max |a − b|, computed in float64 (so float32 and float64 tensors compare alike).</summary>
    public static double MaxAbsDiff(Tensor a, Tensor b)
        => (a.to_type(ScalarType.Float64) - b.to_type(ScalarType.Float64)).abs().max().item<double>();

    public static DeepSeekMoE Layer(ModelConfig? config = null, long seed = 1)
    {
        Backend.Initialize();
        torch.manual_seed(seed);
        return new DeepSeekMoE((config ?? Config()).Validate(), "model.layers.1.mlp", Linears.Standard(0.2));
    }
}
