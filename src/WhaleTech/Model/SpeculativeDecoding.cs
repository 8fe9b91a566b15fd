// Self-speculative greedy decoding with the MTP modules as the draft (DeepSeek-V3 §5.4.3; speculative decoding:
// Leviathan et al. 2023, Chen et al. 2023; blockwise parallel decoding: Stern et al. 2018).
//
// State of a round: confirmed tokens s_0…s_{m−1}; the main model's KV cache holds positions 0…m−2 and its
// final hidden states h_0…h_{m−2} are kept (s_{m−1} was just chosen from h_{m−2} and is not yet fed).
//   draft   MTP module 1 at position m−2 reads (h_{m−2}, s_{m−1}) and proposes s_m; module k reads module k−1's
//           output there and the token k−1 drafts ahead, proposing s_{m+k−1}  →  d ≤ D draft tokens;
//   verify  ONE main forward over [s_{m−1}, draft_1 … draft_d] at positions m−1…m−1+d gives the main model's own
//           argmax after each of them; the longest prefix of drafts equal to those argmaxes is accepted (a of d)
//           and the main argmax after the last accepted token is emitted too (a correction or a bonus token);
//   rollback the main cache keeps positions ≤ m−1+a; the MTP cache keeps the positions whose inputs are all
//           confirmed (for D = 1 that is all of them: module 1 only ever reads confirmed tokens).
// Every emitted token is the main model's greedy choice given the confirmed prefix, so the output equals
// Generation.Generate's greedy output — up to floating-point: the verify step computes d+1 positions in one
// forward, which can differ from d+1 one-token forwards in the last bits (different GEMM shapes); only an
// argmax near-tie can flip. Batch 1 only.
//
// Shapes: P prompt, N new tokens, D MTP depth, d ≤ D drafts per round, C cache capacity, Dm hidden, V vocab.
using TorchSharp;
using WhaleTech.Attention;
using static TorchSharp.torch;

namespace WhaleTech.Model;

/// <summary>Proposes <c>count</c> tokens to follow <c>sequence</c> (the confirmed tokens). For tests and
/// ablations (an oracle, an n-gram table); the default draft is the model's own MTP modules.</summary>
public delegate int[] DraftFunc(IReadOnlyList<int> sequence, int count);

public sealed record SpeculativeResult(int[] Tokens, bool Stopped, int Drafted, int Accepted, int MainForwards)
{
    /// <summary>Accepted draft tokens / drafted tokens (0 when nothing was drafted).</summary>
    public double AcceptanceRate => Drafted == 0 ? 0 : (double)Accepted / Drafted;
    /// <summary>Emitted tokens per forward pass of the main model (1 for plain decoding; at most D + 1).</summary>
    public double TokensPerForward => MainForwards == 0 ? 0 : (double)Tokens.Length / MainForwards;
}

public static class SpeculativeDecoding
{
    /// <summary>Greedy speculative decoding of one prompt. <paramref name="options"/>: Temperature must be 0;
    /// MaxNewTokens and StopTokens mean what they mean for <see cref="Generation.Generate"/>.</summary>
    /// <param name="drafter">Replaces the MTP draft (then the model needs no MTP modules).</param>
    /// <param name="draftTokens">Drafts per round; default D = num_nextn_predict_layers (required with a drafter).</param>
    public static SpeculativeResult Generate(DeepSeekLM model, int[] prompt, SamplingOptions options, DraftFunc? drafter = null, int? draftTokens = null)
    {
        options.Validate();
        if (options.Temperature != 0) throw new Runtime.WhaleArgumentException("temperature", options.Temperature, "must be 0: speculative decoding here is greedy only");
        if (prompt.Length == 0) throw new Runtime.WhaleArgumentException("prompt", "[]", "needs at least one token (e.g. <bos>)");
        int D = model.MtpModules.Count;
        if (drafter is null && D == 0) throw new Runtime.WhaleArgumentException("num_nextn_predict_layers", 0, "must be ≥ 1 to draft with MTP modules (or pass a drafter)");
        int maxDraft = draftTokens ?? D;
        if (maxDraft < 1 || (drafter is null && maxDraft > D))
            throw new Runtime.WhaleArgumentException("draft tokens", maxDraft, drafter is null ? $"must be in [1, D = {D}]" : "must be ≥ 1");

        var device = model.Embedding.weight!.device;
        int P = prompt.Length, N = options.MaxNewTokens;
        long capacity = Math.Min(P + N + maxDraft, model.Config.MaxPositionEmbeddings);
        if (P + N > capacity) throw new Runtime.WhaleArgumentException("prompt + max_new_tokens", P + N, $"must be ≤ max_position_embeddings = {model.Config.MaxPositionEmbeddings}");
        var stopSet = options.StopTokens.ToHashSet();
        using var noGrad = torch.no_grad();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var cache = model.CreateCache(1, capacity);
            using var mtpCache = drafter is null ? model.CreateMtpCache(1, capacity) : null;
            using var hidden = torch.zeros(1, capacity, model.Config.HiddenSize, dtype: model.Embedding.weight!.dtype, device: device); // h_0…h_{m−2}
            var seq = new List<int>(prompt);
            var output = new List<int>(N);
            bool stopped = false;
            int drafted = 0, accepted = 0, forwards = 0;

            bool Emit(int token)
            {
                seq.Add(token); output.Add(token);
                if (stopSet.Contains(token)) stopped = true;
                return !stopped && output.Count < N;
            }

            using (var scope = torch.NewDisposeScope())                                      // prefill
            {
                var h = model.ForwardHidden(torch.tensor(prompt.Select(t => (long)t).ToArray(), device: device).unsqueeze(0), cache: cache); // [1, P, Dm]
                hidden.narrow(1, 0, P).copy_(h);
                forwards++;
                Emit((int)model.Head(h.narrow(1, P - 1, 1)).argmax(-1).item<long>());
            }

            while (!stopped && output.Count < N)
            {
                using var scope = torch.NewDisposeScope();
                int m = seq.Count;
                int d = Math.Min(maxDraft, Math.Min(N - output.Count - 1, (int)(capacity - m)));   // tokens still wanted, room left
                int[] draft = d == 0 ? [] : drafter is not null ? drafter(seq, d) : DraftWithMtp(model, mtpCache!, hidden, seq, d);
                if (draft.Length != d) throw new Runtime.WhaleArgumentException("drafter", draft.Length, $"must return exactly {d} tokens");

                // Verify: one main forward over [s_{m−1}, draft…] at positions m−1…m−1+d.
                var ids = torch.tensor(new[] { (long)seq[m - 1] }.Concat(draft.Select(t => (long)t)).ToArray(), device: device).unsqueeze(0); // [1, d+1]
                var h = model.ForwardHidden(ids, cache: cache);                            // [1, d+1, Dm]
                var greedy = model.Head(h).argmax(-1).squeeze(0).to(CPU).data<long>().ToArray(); // [d+1]: main argmax after each
                forwards++;
                int a = 0;
                while (a < d && greedy[a] == draft[a]) a++;
                hidden.narrow(1, m - 1, a + 1).copy_(h.narrow(1, 0, a + 1));               // h_{m−1}…h_{m−1+a}: confirmed inputs
                cache.Truncate(m + a);                                                      // drop rejected draft positions
                drafted += d; accepted += a;
                bool more = true;
                for (int i = 0; i < a && more; i++) more = Emit(draft[i]);
                if (more) Emit((int)greedy[a]);
                // MTP cache: keep positions i with all inputs confirmed, i + D ≤ m' − 1 (and ≤ m − 2, all it computed).
                if (mtpCache is not null) mtpCache.Truncate(Math.Min(mtpCache.Length, Math.Max(0, seq.Count - D)));
            }
            return new SpeculativeResult(output.ToArray(), stopped, drafted, accepted, forwards);
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    /// <summary>The MTP draft of one round: runs the D modules over the positions the MTP cache lacks (L…m−2) and
    /// returns module k's argmax at position m−2, k = 1…d (module k's input token there is the (k−1)-th draft).</summary>
    static int[] DraftWithMtp(DeepSeekLM model, InferenceCache mtpCache, Tensor hidden, List<int> seq, int d)
    {
        using var scope = torch.NewDisposeScope();
        var device = hidden.device;
        int m = seq.Count, L = (int)mtpCache.Length, T = m - 1 - L;                      // T ≥ 1 new positions
        var extended = new List<int>(seq);                                              // confirmed + drafts so far
        var ctx = MultiTokenPrediction.Context(1, T, mtpCache, device);
        var prev = hidden.narrow(1, L, T);                                              // h^0 at L…m−2: [1, T, Dm]
        foreach (var module in model.MtpModules)
        {
            int k = module.Depth;
            var next = torch.tensor(extended.Skip(L + k).Take(T).Select(t => (long)t).ToArray(), device: device).unsqueeze(0); // t_{i+k}: [1, T]
            var hk = module.Forward(prev, model.Embedding.forward(next), ctx);          // [1, T, Dm]
            var logits = model.Head(module.HeadInput(hk.narrow(1, T - 1, 1)));          // [1, 1, V]: predicts s_{m−1+k}
            extended.Add((int)logits.argmax(-1).item<long>());
            prev = hk;
        }
        mtpCache.Advance(T);
        return extended.Skip(m).Take(d).ToArray();
    }
}
