// Held-out losses of a model with multi-token-prediction modules (DeepSeek-V3 §2.2, eqs. 24–25): the main
// next-token cross-entropy and each depth's L_MTP^k, measured without gradients in eval mode on batches the model
// did not train on. L_MTP^k is module k's mean −log P^k_{i+k+1}[t_{i+k+1}] over the T−k positions it covers
// (eq. 24), so depth k is scored on T−k tokens per sequence and the main loss on T. Each is the mean over the
// batches of the per-batch mean (batches have equal size, so this is the mean over all scored tokens).
//
// Shapes: B batch, T sequence length, D MTP depth, V vocab.
using TorchSharp;
using WhaleTech.Model;
using static TorchSharp.torch;

using WhaleTech.Core;

namespace WhaleTech.Training;

/// <summary>Held-out main loss and per-depth MTP losses (nats per token).</summary>
public sealed record MtpEvalLoss(double Main, double[] Depths, int Batches, long TokensPerBatch)
{
    /// <summary>One line: "eval loss: main 0.646 · MTP depth 1 0.650 · depth 2 0.702".</summary>
    public override string ToString()
        => $"eval loss: main {Main:F3}" + string.Concat(Depths.Select((l, i) => (i == 0 ? " · MTP depth 1 " : $" · depth {i + 1} ") + l.ToString("F3")));
}

public static class MtpEvaluation
{
    /// <summary>Main and per-depth MTP losses over <paramref name="batches"/> batches of <paramref name="stream"/>
    /// (no gradients, eval mode; the model's training flag is restored). A model without MTP modules reports only Main.</summary>
    public static MtpEvalLoss Evaluate(DeepSeekLM model, TokenWindowStream stream, int batches, Device device)
    {
        Runtime.Guard.Positive("eval batches", batches);
        int D = model.MtpModules.Count;
        if (D > 0 && stream.SequenceLength <= D)
            throw new Runtime.WhaleArgumentException("seq_len", stream.SequenceLength, $"must exceed num_nextn_predict_layers = {D}");
        using var noGrad = torch.no_grad();
        bool was = model.training;
        model.eval();
        try
        {
            double main = 0;
            var depths = new double[D];
            for (int i = 0; i < batches; i++)
            {
                using var scope = torch.NewDisposeScope();
                var (x, y) = stream.Next(device);                                             // [B, T] each
                if (D == 0) { main += Losses.CrossEntropy(model.forward(x), y).item<float>(); continue; }
                var (logits, mtpLogits) = model.ForwardWithMtp(x);                            // [B, T, V], D × [B, T−k, V]
                main += Losses.CrossEntropy(logits, y).item<float>();
                var perDepth = MultiTokenPrediction.DepthLosses(mtpLogits, y);                 // L_MTP^k, eq. 24
                for (int k = 0; k < D; k++) depths[k] += perDepth[k].item<float>();
            }
            return new MtpEvalLoss(main / batches, depths.Select(l => l / batches).ToArray(), batches, (long)stream.BatchSize * stream.SequenceLength);
        }
        finally
        {
            model.train(was);
        }
    }
}
