// Batched autoregressive generation with the KV cache: prompts of different lengths are left-padded into
// one batch (padding slots are masked out of attention and do not advance RoPE positions), each step
// feeds one token per sequence, and sequences stop at a stop token or max_new_tokens.
// Sampling: greedy (temperature 0), temperature, top-k (Fan et al. 2018), top-p / nucleus (Holtzman et
// al. 2020). `UseCache = false` recomputes the whole sequence every step (the benchmark's baseline; the
// tests check both give the same tokens).
//
// Shapes: B batch, L longest prompt, N new tokens, V vocab.
using TorchSharp;
using WhaleTech.Attention;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Model;

public sealed record SamplingOptions
{
    public int MaxNewTokens { get; init; } = 32;
    /// <summary>0 = greedy (argmax).</summary>
    public double Temperature { get; init; }
    /// <summary>0 = off.</summary>
    public int TopK { get; init; }
    /// <summary>1 = off.</summary>
    public double TopP { get; init; } = 1.0;
    public IReadOnlyList<int> StopTokens { get; init; } = [CharTokenizer.Eos];
    public int PadToken { get; init; } = CharTokenizer.Pad;
    public bool UseCache { get; init; } = true;

    public SamplingOptions Validate()
    {
        Runtime.Guard.Positive("max_new_tokens", MaxNewTokens);
        Runtime.Guard.NonNegative("temperature", Temperature);
        Runtime.Guard.NonNegative("top_k", TopK);
        if (!(TopP > 0 && TopP <= 1)) throw new Runtime.WhaleArgumentException("top_p", TopP, "must be in (0, 1]");
        return this;
    }
}

public sealed record GenerationResult(int[][] Completions, bool[] Stopped)
{
    /// <summary>Completion lengths (tokens generated, stop token included).</summary>
    public int[] Lengths => Completions.Select(c => c.Length).ToArray();
}

public static class Generation
{
    /// <summary>Generates a completion for each prompt. <paramref name="generator"/> seeds sampling (null = global RNG).</summary>
    public static GenerationResult Generate(DeepSeekLM model, IReadOnlyList<int[]> prompts, SamplingOptions options, torch.Generator? generator = null)
    {
        options.Validate();
        if (prompts.Count == 0) throw new Runtime.WhaleArgumentException("prompts", "[]", "must hold at least one prompt");
        if (prompts.Any(p => p.Length == 0)) throw new Runtime.WhaleArgumentException("prompts", "an empty prompt", "every prompt needs at least one token (e.g. <bos>)");
        var device = model.Embedding.weight!.device;
        int B = prompts.Count, L = prompts.Max(p => p.Length), N = options.MaxNewTokens;
        using var noGrad = torch.no_grad();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            var (ids, valid, positions) = LeftPad(prompts, device);                                // [B, L] each
            using var idsScope = ids; using var validScope = valid; using var positionsScope = positions;
            using var cache = options.UseCache ? model.CreateCache(B, L + N) : null;

            var outTokens = new List<int>[B];
            for (int b = 0; b < B; b++) outTokens[b] = new List<int>(N);
            var stopped = new bool[B];
            var stopSet = options.StopTokens.ToHashSet();
            var lastPos = positions.select(1, L - 1).clone();                                     // [B]
            Tensor allIds = ids.clone(), allValid = valid.clone(), allPos = positions.clone();   // grow without cache

            using (var scope0 = torch.NewDisposeScope())
            {
                var logits = model.Forward(ids, positions, cache, valid);                         // [B, L, V]
                var next = Sample(logits.select(1, L - 1), options, generator);                   // [B]
                Record(next);
                next.MoveToOuterDisposeScope();
                StepLoop(next);
            }

            void Record(Tensor next)
            {
                var toks = next.to(torch.CPU).data<long>().ToArray();
                for (int b = 0; b < B; b++)
                {
                    if (stopped[b]) continue;
                    outTokens[b].Add((int)toks[b]);
                    if (stopSet.Contains((int)toks[b])) stopped[b] = true;
                }
            }

            void StepLoop(Tensor next)
            {
                using var ones = torch.ones(B, 1, dtype: ScalarType.Bool, device: device);       // every new token is real
                // The decode steps' mask, built once: after the prompt every slot holds a real token, so step t's mask is
                // the first L + t slots of one [B, 1, 1, L + N] row (what BuildMask would rebuild each step).
                using var decodeMask = cache is null ? null : DecodeMask(cache.KeyValid, L, N);
                for (int step = 1; step < N && !stopped.All(s => s); step++)
                {
                    using var scope = torch.NewDisposeScope();
                    var pos = (lastPos + step).unsqueeze(1);                                      // [B, 1]
                    var tok = next.unsqueeze(1);                                                  // [B, 1]
                    Tensor stepLogits;
                    if (cache is not null)   // tokens come from the sampler and positions fit the cache: no host-side checks
                        stepLogits = model.ForwardStep(tok, pos, cache, ones, decodeMask!.narrow(-1, 0, cache.Length + 1)).select(1, 0); // [B, V]
                    else
                    {
                        var nextAll = torch.cat([allIds, tok], 1);
                        var nextValid = torch.cat([allValid, ones], 1);
                        var nextPos = torch.cat([allPos, pos], 1);
                        allIds.Dispose(); allValid.Dispose(); allPos.Dispose();
                        allIds = nextAll.MoveToOuterDisposeScope(); allValid = nextValid.MoveToOuterDisposeScope(); allPos = nextPos.MoveToOuterDisposeScope();
                        stepLogits = model.Forward(allIds, allPos, null, allValid).select(1, -1);  // [B, V]
                    }
                    var sampled = Sample(stepLogits, options, generator);
                    Record(sampled);
                    next.Dispose();
                    next = sampled.MoveToOuterDisposeScope();
                }
                next.Dispose();
            }
            allIds.Dispose(); allValid.Dispose(); allPos.Dispose(); lastPos.Dispose();
            return new GenerationResult(outTokens.Select(t => t.ToArray()).ToArray(), stopped);
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    /// <summary>The additive mask [B, 1, 1, L + N] of every decode step after an L-token prefill: 0 where a slot holds a
    /// real token (the prompt's valid slots, then every generated one), −inf on the prompt's padding.</summary>
    static Tensor DecodeMask(Tensor keyValid, long promptLength, long newTokens)
    {
        using var scope = torch.NewDisposeScope();
        long b = keyValid.shape[0];
        var valid = torch.ones(b, promptLength + newTokens, dtype: ScalarType.Bool, device: keyValid.device);
        valid.narrow(1, 0, promptLength).copy_(keyValid.narrow(1, 0, promptLength));
        var mask = torch.zeros(b, promptLength + newTokens, dtype: ScalarType.Float32, device: keyValid.device)
            .masked_fill_(valid.logical_not(), float.NegativeInfinity);
        return mask.view(b, 1, 1, promptLength + newTokens).MoveToOuterDisposeScope();
    }

    /// <summary>Left-pads prompts into one batch: ids [B, L] (pad 0), valid [B, L] (false on padding), and RoPE
    /// positions [B, L] = index among the row's real tokens (padding gets 0; it is masked out of attention).</summary>
    public static (Tensor Ids, Tensor Valid, Tensor Positions) LeftPad(IReadOnlyList<int[]> prompts, Device device)
    {
        int B = prompts.Count, L = prompts.Max(p => p.Length);
        var idsData = new long[B * L];
        var validData = new bool[B * L];
        for (int b = 0; b < B; b++)
            for (int i = 0; i < prompts[b].Length; i++)
            {
                idsData[b * L + L - prompts[b].Length + i] = prompts[b][i];
                validData[b * L + L - prompts[b].Length + i] = true;
            }
        var ids = torch.tensor(idsData, [B, L], device: device);
        var valid = torch.tensor(validData, [B, L], device: device);
        using var validLong = valid.to_type(ScalarType.Int64);
        using var cumulative = validLong.cumsum(1);
        using var minusOne = cumulative - 1;
        return (ids, valid, minusOne.clamp_min(0));
    }

    /// <summary>Picks one token per row of <paramref name="logits"/> [B, V] (fp32 math).</summary>
    public static Tensor Sample(Tensor logits, SamplingOptions o, torch.Generator? generator = null)
    {
        using var scope = torch.NewDisposeScope();
        if (o.Temperature == 0) return logits.to_type(ScalarType.Float32).argmax(-1).MoveToOuterDisposeScope();   // greedy
        var probs = Probabilities(logits, o);
        return torch.multinomial(probs, 1, replacement: false, generator: generator).squeeze(-1).MoveToOuterDisposeScope(); // [B]
    }

    /// <summary>The sampling distribution of <paramref name="logits"/> [.., V]: softmax(logits / temperature) restricted
    /// to the top-k and the top-p nucleus, fp32 [.., V]. Temperature must be &gt; 0 (0 means argmax, not a distribution).
    /// Speculative sampling applies this same transform to the draft's and the target's logits.</summary>
    public static Tensor Probabilities(Tensor logits, SamplingOptions o)
    {
        if (!(o.Temperature > 0)) throw new Runtime.WhaleArgumentException("temperature", o.Temperature, "must be > 0 for a sampling distribution (0 = greedy argmax)");
        using var scope = torch.NewDisposeScope();
        var l = SamplingFilter.Apply(logits, o.Temperature, o.TopK, o.TopP);                   // [.., V] fp32, filtered
        return l.softmax(-1).MoveToOuterDisposeScope();                                     // [.., V]
    }
}
