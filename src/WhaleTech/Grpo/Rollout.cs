// Rollouts for GRPO: G completions per prompt from one batched generation with the KV cache (prompts
// left-padded, as Model/Generation does), sampled by the Gumbel-max trick with counter-based noise so each
// (step, prompt, sample) has its own random stream (RandomStreams.cs):
//     y_t = argmax_v ( log softmax(logits_t / τ)_v + g_v ),   g_v = −log(−log u_v),  u_v = U(key, t, v)
// which samples y_t ~ softmax(logits_t / τ) restricted to top-k / top-p.
// Then the packing used by the loss: [B, Lp + Tc] = left-padded prompt ‖ right-padded completion, and the
// per-token log-probabilities log π(o_t | q, o_<t) of the completion tokens.
//
// Shapes: B sequences (prompts × G), Lp longest prompt, Tc longest completion, V vocab.
using TorchSharp;
using WhaleTech.Model;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Grpo;

public sealed record RolloutSampling(int MaxNewTokens, double Temperature = 1.0, int TopK = 0, double TopP = 1.0);

public static class Rollout
{
    /// <summary>Generates one completion per prompt; row b samples from stream <paramref name="keys"/>[b]
    /// (temperature 0 = greedy, keys unused). Completions end with EOS when <see cref="GenerationResult.Stopped"/>.</summary>
    public static GenerationResult Generate(DeepSeekLM model, IReadOnlyList<int[]> prompts, IReadOnlyList<ulong> keys, RolloutSampling s)
    {
        if (prompts.Count == 0) throw new Runtime.WhaleArgumentException("prompts", "[]", "must hold at least one prompt");
        if (keys.Count != prompts.Count) throw new Runtime.WhaleArgumentException("keys", keys.Count, $"must give one stream per prompt ({prompts.Count})");
        Runtime.Guard.Positive("max_new_tokens", s.MaxNewTokens);
        var device = model.Embedding.weight!.device;
        int B = prompts.Count, L = prompts.Max(p => p.Length), N = s.MaxNewTokens, V = model.Config.VocabSize;
        using var noGrad = torch.no_grad();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var cache = model.CreateCache(B, L + N);
            var outTokens = Enumerable.Range(0, B).Select(_ => new List<int>(N)).ToArray();
            var stopped = new bool[B];
            var lastPos = prompts.Select(p => (long)p.Length - 1).ToArray();
            long[] next = [];
            for (int t = 0; t < N && !stopped.All(x => x); t++)
            {
                using var scope = torch.NewDisposeScope();
                Tensor logits;
                if (t == 0)
                {
                    var (ids, valid, positions) = Generation.LeftPad(prompts, device);                   // [B, L] each (left-padded)
                    logits = model.Forward(ids, positions, cache, valid).select(1, L - 1);               // [B, V]
                }
                else
                {
                    var tok = torch.tensor(next, [B, 1], device: device);
                    var pos = torch.tensor(lastPos.Select(p => p + t).ToArray(), [B, 1], device: device);
                    logits = model.Forward(tok, pos, cache, torch.ones(B, 1, dtype: ScalarType.Bool, device: device)).select(1, 0); // [B, V]
                }
                next = SampleRows(logits, keys, t, s, V);
                for (int b = 0; b < B; b++)
                {
                    if (stopped[b]) continue;
                    outTokens[b].Add((int)next[b]);
                    if (next[b] == CharTokenizer.Eos) stopped[b] = true;
                }
            }
            return new GenerationResult(outTokens.Select(o => o.ToArray()).ToArray(), stopped);
        }
        finally { model.train(wasTraining); }
    }

    /// <summary>One token per row of <paramref name="logits"/> [B, V]: Gumbel-max over the filtered
    /// distribution, noise from each row's stream at token index <paramref name="t"/>.</summary>
    static long[] SampleRows(Tensor logits, IReadOnlyList<ulong> keys, int t, RolloutSampling s, int V)
    {
        using var scope = torch.NewDisposeScope();
        var l = logits.to_type(ScalarType.Float32);                                          // [B, V] fp32
        if (s.Temperature == 0) return l.argmax(-1).cpu().data<long>().ToArray();
        l = SamplingFilter.Apply(l, s.Temperature, s.TopK, s.TopP);                            // [B, V], the one filter (Core)
        int B = (int)l.shape[0];
        var noise = new float[B * V];
        for (int b = 0; b < B; b++)
            for (int v = 0; v < V; v++)
                noise[b * V + v] = (float)-Math.Log(-Math.Log(Streams.Uniform(keys[b], t, v)));
        var g = torch.tensor(noise, [B, V], device: l.device);
        return (l.log_softmax(-1) + g).argmax(-1).cpu().data<long>().ToArray();               // [B]
    }
}

/// <summary>Prompts and completions packed for the loss: ids [B, Lp + Tc] (prompt left-padded, completion
/// right-padded), completion targets [B, Tc] and mask [B, Tc] (1 on completion tokens).</summary>
public sealed class PackedBatch : IDisposable
{
    public Tensor Ids { get; }
    public Tensor Valid { get; }
    public Tensor Positions { get; }
    public Tensor Targets { get; }
    public Tensor Mask { get; }
    public int PromptLength { get; }
    public int CompletionLength { get; }
    public long Batch => Ids.shape[0];

    PackedBatch(Tensor ids, Tensor valid, Tensor positions, Tensor targets, Tensor mask, int lp, int tc)
    { Ids = ids; Valid = valid; Positions = positions; Targets = targets; Mask = mask; PromptLength = lp; CompletionLength = tc; }

    public static PackedBatch Create(IReadOnlyList<int[]> prompts, IReadOnlyList<int[]> completions, Device device)
    {
        int B = prompts.Count, Lp = prompts.Max(p => p.Length), Tc = Math.Max(1, completions.Max(c => c.Length)), S = Lp + Tc;
        var ids = new long[B * S];
        var valid = new bool[B * S];
        var pos = new long[B * S];
        var targets = new long[B * Tc];
        var mask = new float[B * Tc];
        for (int b = 0; b < B; b++)
        {
            var p = prompts[b]; var c = completions[b];
            int off = Lp - p.Length;
            for (int i = 0; i < p.Length; i++) { ids[b * S + off + i] = p[i]; valid[b * S + off + i] = true; pos[b * S + off + i] = i; }
            for (int j = 0; j < Tc; j++)
            {
                pos[b * S + Lp + j] = p.Length + j;
                if (j >= c.Length) continue;
                ids[b * S + Lp + j] = c[j]; valid[b * S + Lp + j] = true;
                targets[b * Tc + j] = c[j]; mask[b * Tc + j] = 1;
            }
        }
        return new PackedBatch(torch.tensor(ids, [B, S], device: device), torch.tensor(valid, [B, S], device: device),
            torch.tensor(pos, [B, S], device: device), torch.tensor(targets, [B, Tc], device: device),
            torch.tensor(mask, [B, Tc], device: device), Lp, Tc);
    }

    /// <summary>Rows [start, start + count) as a new batch (for micro-batches).</summary>
    public PackedBatch Rows(long start, long count) => new(Ids.narrow(0, start, count), Valid.narrow(0, start, count),
        Positions.narrow(0, start, count), Targets.narrow(0, start, count), Mask.narrow(0, start, count), PromptLength, CompletionLength);

    /// <summary>log π(o_t | q, o_&lt;t) of each completion token [B, Tc] (fp32), and optionally the entropy of
    /// π(· | q, o_&lt;t) [B, Tc]. With <paramref name="temperature"/> τ ≠ 1 the logits are divided by τ first, so the
    /// loss scores the distribution the rollout sampled from, softmax(logits / τ) (as TRL's GRPOTrainer does).</summary>
    public (Tensor LogProbs, Tensor? Entropy) TokenLogProbs(DeepSeekLM model, bool withEntropy = false, double temperature = 1.0)
    {
        using var scope = torch.NewDisposeScope();
        var logits = model.Forward(Ids, Positions, null, Valid);                               // [B, Lp+Tc, V]
        var l = logits.narrow(1, PromptLength - 1, CompletionLength).to_type(ScalarType.Float32); // [B, Tc, V] fp32
        if (temperature > 0 && temperature != 1.0) l = l / temperature;
        var lp = l.log_softmax(-1);                                                             // [B, Tc, V]
        var tok = lp.gather(-1, Targets.unsqueeze(-1)).squeeze(-1);                             // [B, Tc]
        Tensor? ent = withEntropy ? (-(lp.exp() * lp).sum(-1)).detach().MoveToOuterDisposeScope() : null; // [B, Tc]
        return (tok.MoveToOuterDisposeScope(), ent);
    }

    public void Dispose() { Ids.Dispose(); Valid.Dispose(); Positions.Dispose(); Targets.Dispose(); Mask.Dispose(); }
}
