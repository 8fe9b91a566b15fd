// Comparisons at matched parameter count: every attention variant gets the dense MLP width that brings its model to
// ≈ the MHA model's parameters (the MLP has 3·D·I parameters per layer), so quality differences are not size differences.
using WhaleTech.Core;
using WhaleTech.Model;
using static TorchSharp.torch;

namespace WhaleTech.Lab.Mla;

public static class ParameterMatching
{
    /// <summary><paramref name="make"/>(intermediate) with the intermediate size resized so the model has ≈ the parameters
    /// of <paramref name="makeReference"/>(the default width 8/3·D rounded to 8, + 8), at least 8.</summary>
    public static ModelConfig MatchMlp(Func<int, ModelConfig> make, Func<int, ModelConfig> makeReference, int hidden, int layers)
    {
        int baseIntermediate = hidden * 8 / 3 / 8 * 8 + 8;
        long target = Count(makeReference(baseIntermediate));
        var cfg = make(baseIntermediate);
        long diff = target - Count(cfg);                                          // MLP has 3·D·I parameters per layer
        int adjusted = Math.Max(8, baseIntermediate + (int)Math.Round(diff / (3.0 * hidden * layers)));
        return cfg with { IntermediateSize = adjusted };
    }

    /// <summary>Parameters of a model of <paramref name="cfg"/> (built and disposed).</summary>
    public static long Count(ModelConfig cfg)
    {
        using var scope = NewDisposeScope();
        using var m = new DeepSeekLM(cfg);
        return m.ParameterCount();
    }
}
