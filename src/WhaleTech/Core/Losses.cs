// Losses shared by every trainer and evaluator (LM, MTP, SFT, MoE experiment): one definition each.
//
// Shapes: B batch, T positions, V vocab.
using static TorchSharp.torch;

namespace WhaleTech.Core;

public static class Losses
{
    /// <summary>Mean next-token cross-entropy (nats) of logits [B, T, V] against targets [B, T], computed in fp32
    /// (softmax statistics in full precision whatever the model's dtype).</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets)
        => nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]).to_type(ScalarType.Float32), targets.reshape(-1));
}
