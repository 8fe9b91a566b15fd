// The one sampling filter of the library (generation, speculative sampling, GRPO rollouts): temperature, then
// top-k, then top-p (nucleus; Holtzman et al. 2020), applied to logits in fp32. Filtered-out tokens get −inf,
// so softmax gives the sampling distribution and log_softmax its log-probabilities.
//
// Shapes: [.., V] in and out.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Core;

public static class SamplingFilter
{
    /// <summary>logits / temperature in fp32 with every token outside the top-<paramref name="topK"/> (0 = off) and
    /// outside the smallest prefix of mass ≥ <paramref name="topP"/> (1 = off) set to −inf. Temperature must be &gt; 0.</summary>
    public static Tensor Apply(Tensor logits, double temperature, int topK, double topP)
    {
        using var scope = NewDisposeScope();
        var l = logits.to_type(ScalarType.Float32) / temperature;
        if (topK > 0 && topK < l.shape[^1])
        {
            var kth = l.topk(topK, dim: -1).values.narrow(-1, topK - 1, 1);                 // [.., 1]
            l = l.masked_fill(l.lt(kth), float.NegativeInfinity);
        }
        if (topP < 1.0)
        {
            var (sorted, order) = l.sort(-1, descending: true);
            var probsSorted = sorted.softmax(-1);
            var drop = (probsSorted.cumsum(-1) - probsSorted).gt(topP);                   // keep the smallest prefix with mass ≥ p
            l = l.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float.NegativeInfinity);
        }
        return l.MoveToOuterDisposeScope();
    }
}
