// Self-speculative decoding with the MTP modules as the draft (DeepSeek-V3 §5.4.3), greedy or sampled, batched.
// Speculative decoding / speculative sampling: Leviathan et al. 2023 ("Fast Inference from Transformers via
// Speculative Decoding", Algorithm 1), Chen et al. 2023; blockwise parallel decoding: Stern et al. 2018.
//
// State of a round: every row has m confirmed tokens s_0…s_{m−1} in slots 0…m−1 (left padding included); the
// main KV cache holds slots 0…m−2 and their final hidden states h_0…h_{m−2} are kept (s_{m−1} is not yet fed).
//   draft   MTP module 1 at slot m−2 reads (h_{m−2}, s_{m−1}) and gives q_1 over s_m; module k reads module k−1's
//           output there and the token k−1 drafts ahead, giving q_k over s_{m+k−1}. Greedy: x_k = argmax q_k;
//           sampling: x_k ~ q_k, with q_k = the same temperature / top-k / top-p transform the target uses.
//   verify  ONE main forward over [s_{m−1}, x_1 … x_d] gives the target p_1 … p_{d+1} after each of them.
//           Greedy: accept the longest prefix with x_j = argmax p_j. Sampling: accept x_j with probability
//           min(1, p_j(x_j) / q_j(x_j)) in order; at the first rejection j emit a token from
//           norm(max(0, p_j − q_j)); when all d are accepted emit a bonus token from p_{d+1}.
//   rollback InferenceCache.Truncate drops the rejected slots of the main cache; the MTP cache keeps only the
//           positions whose input tokens were all confirmed when it computed them.
//
// Why sampling is exact (Leviathan et al. Appendix A.1): for one draft token x ~ q, the emitted token y has
//   P(y = t) = q(t)·min(1, p(t)/q(t)) + P(reject)·r(t),   P(reject) = Σ_t q(t)·(1 − min(1, p/q)) = Σ_t max(0, q − p),
//   r(t) = max(0, p(t) − q(t)) / Σ_t' max(0, p − q);  since Σ max(0, p − q) = Σ max(0, q − p) (both sum to 1),
//   P(y = t) = min(q(t), p(t)) + max(0, p(t) − q(t)) = p(t).
// Chained drafts: given that x_1…x_{j−1} were accepted, x_j ~ q_j(·|prefix, x_{<j}) and the test on x_j uses fresh
// uniform noise, so the same identity gives y_j ~ p(·|prefix, y_{<j}); the bonus token is drawn from p directly.
// Ending a round early at any point that depends only on tokens already emitted or on other rows' independent
// noise (the batch rule below, stop tokens, max_new_tokens) keeps this: the next token is drawn from p by the next
// round instead. Hence every emitted token follows the target's sampling distribution given its prefix, for any
// draft q (a bad draft only costs speed). Temperature 0 is the greedy path and emits plain greedy's tokens.
//
// Batching (rows accept different numbers of drafts): the cache has one Length for all rows, so a round keeps the
// MINIMUM a* over the rows of the accepted count (rows that finish this round — stop token or max_new_tokens —
// do not count) and every row emits a* + 1 tokens: its first a* accepted drafts and then its correction/bonus
// token, or, for a row that accepted more, its (a*+1)-th draft, which it had accepted too. Simple and exact
// (see above), but the batch's tokens per forward fall toward the worst row's; per-row cache lengths (holes in
// the cache marked invalid, per-row RoPE positions) would keep every row's acceptance, at the price of a cache
// that grows by d+1 slots per round and per-row MTP bookkeeping — not done here.
//
// Floating point: the verify step computes d+1 positions in one forward, which can differ from d+1 one-token
// forwards in the last bits (other GEMM shapes); only a near-tie (argmax, or a sample at a boundary) can differ.
//
// Shapes: B batch, L longest prompt, N new tokens, D MTP depth, d ≤ D drafts per round, C cache capacity,
// Dm hidden, V vocab.
using TorchSharp;
using WhaleTech.Attention;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Model;

/// <summary>Proposes <c>count</c> tokens to follow <c>sequence</c> (the confirmed tokens). For tests and ablations (an
/// oracle, an n-gram table); the default draft is the model's own MTP modules. Deterministic: q is one-hot.</summary>
public delegate int[] DraftFunc(IReadOnlyList<int> sequence, int count);

/// <summary>A sampling draft: <c>count</c> tokens to follow <c>sequence</c> and the distributions q [count, V] (fp32,
/// rows summing to 1) they were drawn from, or null for a deterministic draft (q one-hot).</summary>
public delegate (int[] Tokens, Tensor? Probabilities) DraftSampler(IReadOnlyList<int> sequence, int count, torch.Generator? generator);

public sealed record SpeculativeResult(int[] Tokens, bool Stopped, int Drafted, int Accepted, int MainForwards)
{
    /// <summary>Accepted draft tokens / drafted tokens (0 when nothing was drafted).</summary>
    public double AcceptanceRate => Drafted == 0 ? 0 : (double)Accepted / Drafted;
    /// <summary>Emitted tokens per forward pass of the main model (1 for plain decoding; at most D + 1).</summary>
    public double TokensPerForward => MainForwards == 0 ? 0 : (double)Tokens.Length / MainForwards;
}

/// <summary>A batch: Drafted = Σ over rows still generating of d; Accepted = Σ each row's own accepted count a;
/// Kept = Σ min(a, a*): the accepted drafts inside the batch's common prefix a*, i.e. the speculative gain the row
/// keeps (a row that accepted more still emits its next accepted draft, but in place of its correction/bonus token,
/// so it gains nothing from it); RowForwards = Σ over main forwards of the rows still generating.</summary>
public sealed record SpeculativeBatchResult(int[][] Completions, bool[] Stopped, long Drafted, long Accepted, long Kept, int MainForwards, long RowForwards)
{
    /// <summary>Each row's own acceptance: accepted / drafted (the draft's quality).</summary>
    public double AcceptanceRate => Drafted == 0 ? 0 : (double)Accepted / Drafted;
    /// <summary>Kept / drafted: the acceptance left after the batch keeps the minimum (= AcceptanceRate at batch 1).</summary>
    public double KeptRate => Drafted == 0 ? 0 : (double)Kept / Drafted;
    /// <summary>Emitted tokens per main forward and row (1 for plain decoding; at most D + 1).</summary>
    public double TokensPerForward => RowForwards == 0 ? 0 : (double)Completions.Sum(c => c.Length) / RowForwards;
}

public static class SpeculativeDecoding
{
    /// <summary>Speculative decoding of one prompt (greedy at temperature 0, else speculative sampling; see
    /// <see cref="GenerateBatch"/>).</summary>
    /// <param name="drafter">Replaces the MTP draft (deterministic: q one-hot; then the model needs no MTP modules).</param>
    /// <param name="draftTokens">Drafts per round; default D = num_nextn_predict_layers (required with a drafter).</param>
    public static SpeculativeResult Generate(DeepSeekLM model, int[] prompt, SamplingOptions options, DraftFunc? drafter = null, int? draftTokens = null,
                                             torch.Generator? generator = null)
    {
        DraftSampler? sampler = drafter is null ? null : (seq, count, _) => (drafter(seq, count), (Tensor?)null);
        var r = GenerateBatch(model, [prompt], options, generator, sampler, draftTokens);
        return new SpeculativeResult(r.Completions[0], r.Stopped[0], (int)r.Drafted, (int)r.Accepted, r.MainForwards);
    }

    /// <summary>Speculative decoding of a batch of prompts (left-padded like <see cref="Generation.Generate"/>).
    /// <paramref name="options"/>: Temperature 0 = greedy (the tokens of plain greedy decoding), else speculative
    /// sampling with the same temperature / top-k / top-p as <see cref="Generation.Sample"/>; MaxNewTokens and StopTokens
    /// per row as there. <paramref name="generator"/> seeds all draws (null = libtorch's global RNG).</summary>
    /// <param name="drafter">Replaces the MTP draft, called per row (then the model needs no MTP modules).</param>
    /// <param name="draftTokens">Drafts per round; default D = num_nextn_predict_layers (required with a drafter).</param>
    public static SpeculativeBatchResult GenerateBatch(DeepSeekLM model, IReadOnlyList<int[]> prompts, SamplingOptions options, torch.Generator? generator = null,
                                                       DraftSampler? drafter = null, int? draftTokens = null)
    {
        options.Validate();
        if (prompts.Count == 0) throw new Runtime.WhaleArgumentException("prompts", "[]", "must hold at least one prompt (batch ≥ 1)");
        if (prompts.Any(p => p.Length == 0)) throw new Runtime.WhaleArgumentException("prompt", "[]", "needs at least one token (e.g. <bos>)");
        int D = model.MtpModules.Count;
        if (drafter is null && D == 0) throw new Runtime.WhaleArgumentException("num_nextn_predict_layers", 0, "must be ≥ 1 to draft with MTP modules (or pass a drafter)");
        int maxDraft = draftTokens ?? D;
        if (maxDraft < 1 || (drafter is null && maxDraft > D))
            throw new Runtime.WhaleArgumentException("draft tokens", maxDraft, drafter is null ? $"must be in [1, D = {D}]" : "must be ≥ 1");

        var device = model.Embedding.weight!.device;
        int B = prompts.Count, L = prompts.Max(p => p.Length), N = options.MaxNewTokens;
        int V = (int)model.Config.VocabSize;
        bool greedy = options.Temperature == 0;
        long capacity = Math.Min(L + N + maxDraft, model.Config.MaxPositionEmbeddings);
        if (L + N > capacity) throw new Runtime.WhaleArgumentException("prompt + max_new_tokens", L + N, $"must be ≤ max_position_embeddings = {model.Config.MaxPositionEmbeddings}");
        var stopSet = options.StopTokens.ToHashSet();
        var pad = prompts.Select(p => L - p.Length).ToArray();                                // left padding per row
        using var noGrad = torch.no_grad();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var cache = model.CreateCache(B, capacity);
            using var mtpCache = drafter is null ? model.CreateMtpCache(B, capacity) : null;
            using var hidden = torch.zeros(B, capacity, model.Config.HiddenSize, dtype: model.Embedding.weight!.dtype, device: device); // h by slot
            var seqs = new List<int>[B];                                                      // tokens by slot, padding 0
            var outputs = new List<int>[B];
            var stopped = new bool[B];
            var done = new bool[B];                                                           // stop token or N tokens
            for (int b = 0; b < B; b++) { seqs[b] = [.. Enumerable.Repeat(0, pad[b]), .. prompts[b]]; outputs[b] = new List<int>(N); }
            long drafted = 0, accepted = 0, kept = 0, rowForwards = 0;
            int forwards = 0;

            void Emit(int b, int token)
            {
                outputs[b].Add(token);
                if (stopSet.Contains(token)) stopped[b] = done[b] = true;
                if (outputs[b].Count >= N) done[b] = true;
            }

            using (var scope = torch.NewDisposeScope())                                      // prefill
            {
                var (ids, valid, positions) = Generation.LeftPad(prompts, device);           // [B, L] each
                var h = model.ForwardHidden(ids, positions, cache, valid);                    // [B, L, Dm]
                hidden.narrow(1, 0, L).copy_(h);
                forwards++; rowForwards += B;
                var first = Generation.Sample(model.Head(h.narrow(1, L - 1, 1)).select(1, 0), options, generator).to(CPU).data<long>().ToArray(); // [B]
                for (int b = 0; b < B; b++) { seqs[b].Add((int)first[b]); Emit(b, (int)first[b]); }
            }

            while (done.Any(x => !x))
            {
                using var scope = torch.NewDisposeScope();
                int m = seqs[0].Count;                                                        // the same for every row
                int active = done.Count(x => !x);
                int d = Math.Min(maxDraft, Math.Min(N - (m - L) - 1, (int)(capacity - m)));   // tokens still wanted, room left
                var (draft, q) = d == 0 ? (new long[B, 0], null)
                               : drafter is not null ? DraftWithFunc(drafter, seqs, pad, done, d, V, greedy, generator, device)
                               : DraftWithMtp(model, mtpCache!, hidden, seqs, pad, d, options, generator);

                // Verify: one main forward over [s_{m−1}, x_1 … x_d] at each row's positions.
                var feed = new long[B, d + 1];
                var feedPos = new long[B, d + 1];
                for (int b = 0; b < B; b++)
                    for (int j = 0; j <= d; j++)
                    {
                        feed[b, j] = j == 0 ? seqs[b][m - 1] : draft[b, j - 1];
                        feedPos[b, j] = m - 1 - pad[b] + j;
                    }
                var h = model.ForwardHidden(torch.tensor(feed, device: device), torch.tensor(feedPos, device: device), cache,
                                            torch.ones(B, d + 1, dtype: ScalarType.Bool, device: device));  // [B, d+1, Dm]
                var logits = model.Head(h);                                                   // [B, d+1, V]
                forwards++; rowForwards += active;
                var (acceptedPerRow, next) = greedy ? VerifyGreedy(logits, draft) : VerifySampled(logits, draft, q!, options, generator);

                // The batch keeps the minimum accepted count over the rows that do not finish this round.
                int common = d;
                for (int b = 0; b < B; b++)
                {
                    if (done[b]) continue;
                    int a = acceptedPerRow[b];
                    bool finishes = outputs[b].Count + a + 1 >= N;
                    for (int j = 0; j < a && !finishes; j++) finishes = stopSet.Contains((int)draft[b, j]);
                    if (!finishes) common = Math.Min(common, a);
                }
                for (int b = 0; b < B; b++)
                {
                    bool wasActive = !done[b];
                    int a = acceptedPerRow[b];
                    if (wasActive) { drafted += d; accepted += a; kept += Math.Min(a, common); }
                    for (int j = 0; j <= common; j++)                                         // slots m…m+common
                    {
                        int token = (int)(j == a ? next[b] : j < d ? draft[b, j] : next[b]);  // j > a only for finished rows: filler
                        seqs[b].Add(token);
                        if (!done[b]) Emit(b, token);
                    }
                }
                hidden.narrow(1, m - 1, common + 1).copy_(h.narrow(1, 0, common + 1));        // h_{m−1}…h_{m−1+common}: confirmed inputs
                cache.Truncate(m + common);                                                   // drop the rejected slots
                // MTP cache: keep position i only if module D read a confirmed token there: i + D ≤ m' − 2.
                if (mtpCache is not null) mtpCache.Truncate(Math.Min(mtpCache.Length, Math.Max(0, seqs[0].Count - 1 - D)));
            }
            return new SpeculativeBatchResult(outputs.Select(o => o.ToArray()).ToArray(), stopped, drafted, accepted, kept, forwards, rowForwards);
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    /// <summary>Greedy verification: per row the length a of the longest draft prefix equal to the target's argmax,
    /// and the argmax after it (the correction, or the bonus when a = d).</summary>
    static (int[] Accepted, long[] Next) VerifyGreedy(Tensor logits, long[,] draft)
    {
        int B = draft.GetLength(0), d = draft.GetLength(1);
        var best = logits.to_type(ScalarType.Float32).argmax(-1).to(CPU).data<long>().ToArray(); // [B, d+1] flattened
        var a = new int[B];
        var next = new long[B];
        for (int b = 0; b < B; b++)
        {
            while (a[b] < d && best[b * (d + 1) + a[b]] == draft[b, a[b]]) a[b]++;
            next[b] = best[b * (d + 1) + a[b]];
        }
        return (a, next);
    }

    /// <summary>Speculative sampling (Leviathan et al. Algorithm 1): accept x_j while u_j·q_j(x_j) &lt; p_j(x_j), then draw
    /// the next token from norm(max(0, p_a − q_a)), or from p_{d+1} when all d were accepted.</summary>
    static (int[] Accepted, long[] Next) VerifySampled(Tensor logits, long[,] draft, Tensor q, SamplingOptions options, torch.Generator? generator)
    {
        using var scope = torch.NewDisposeScope();
        int B = draft.GetLength(0), d = draft.GetLength(1);
        var device = logits.device;
        var p = Generation.Probabilities(logits, options);                                   // [B, d+1, V] target
        long V = p.shape[2];
        var a = torch.zeros(B, dtype: ScalarType.Int64, device: device);                     // [B]
        var dist = p.narrow(1, 0, 1);                                                         // [B, 1, V] (d = 0: the bonus)
        if (d > 0)
        {
            var x = torch.tensor(draft, device: device).unsqueeze(-1);                        // [B, d, 1]
            var pd = p.narrow(1, 0, d);                                                       // [B, d, V]
            var px = pd.gather(-1, x).squeeze(-1);                                            // [B, d]
            var qx = q.gather(-1, x).squeeze(-1);                                             // [B, d]
            var u = torch.rand(new long[] { B, d }, generator: generator, device: device);   // [B, d] uniform [0, 1)
            var accept = (u * qx).lt(px).to_type(ScalarType.Int64);                          // accept with prob min(1, p/q)
            a = accept.cumprod(1).sum(1);                                                     // [B] leading accepts
            var residual = (pd - q).clamp_min(0);                                             // [B, d, V] max(0, p − q)
            dist = torch.cat([residual, p.narrow(1, d, 1)], 1)                                // [B, d+1, V]
                .gather(1, a.view(B, 1, 1).expand(B, 1, V));                                  // [B, 1, V] at index a
        }
        var chosen = dist.squeeze(1);                                                         // [B, V]
        var mass = chosen.sum(-1, keepdim: true);                                             // [B, 1]
        var pAtA = p.gather(1, a.view(B, 1, 1).expand(B, 1, V)).squeeze(1);                   // [B, V]
        chosen = torch.where(mass.gt(1e-12), chosen / mass.clamp_min(1e-12), pAtA);           // residual ≈ 0 only if p ≈ q: p then
        var next = torch.multinomial(chosen, 1, replacement: false, generator: generator).squeeze(-1); // [B]
        return (a.to(CPU).data<long>().Select(v => (int)v).ToArray(), next.to(CPU).data<long>().ToArray());
    }

    /// <summary>The MTP draft of one round for every row: runs the D modules over the slots the MTP cache lacks
    /// (Lm…m−2) and returns module k's token at slot m−2 for k = 1…d (module k's input token there is the (k−1)-th
    /// draft), with q_k [B, d, V] when sampling (null when greedy).</summary>
    static (long[,] Tokens, Tensor? Q) DraftWithMtp(DeepSeekLM model, InferenceCache mtpCache, Tensor hidden, List<int>[] seqs, int[] pad, int d,
                                                     SamplingOptions options, torch.Generator? generator)
    {
        using var scope = torch.NewDisposeScope();
        var device = hidden.device;
        int B = seqs.Length, m = seqs[0].Count, Lm = (int)mtpCache.Length, T = m - 1 - Lm;  // T ≥ 1 new positions
        var extended = seqs.Select(s => new List<int>(s)).ToArray();                          // confirmed + drafts so far
        var positions = new long[B, T];
        var valid = new bool[B, T];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) { positions[b, t] = Math.Max(0, Lm + t - pad[b]); valid[b, t] = Lm + t >= pad[b]; }
        var ctx = MultiTokenPrediction.Context(torch.tensor(positions, device: device), torch.tensor(valid, device: device), mtpCache);
        var prev = hidden.narrow(1, Lm, T);                                                   // h^0 at Lm…m−2: [B, T, Dm]
        var qs = new List<Tensor>();
        foreach (var module in model.MtpModules)
        {
            int k = module.Depth;
            var nextIds = new long[B, T];
            for (int b = 0; b < B; b++) for (int t = 0; t < T; t++) nextIds[b, t] = extended[b][Lm + k + t];
            var hk = module.Forward(prev, model.Embedding.forward(torch.tensor(nextIds, device: device)), ctx); // [B, T, Dm]
            prev = hk;
            if (k > d) { foreach (var e in extended) e.Add(0); continue; }                   // only feeds positions the rollback drops
            var logits = model.Head(module.HeadInput(hk.narrow(1, T - 1, 1))).squeeze(1);     // [B, V]: over s_{m−1+k}
            Tensor token;
            if (options.Temperature == 0) token = logits.argmax(-1);
            else
            {
                var qk = Generation.Probabilities(logits, options);                          // [B, V]: the draft's q_k
                qs.Add(qk);
                token = torch.multinomial(qk, 1, replacement: false, generator: generator).squeeze(-1);
            }
            var ids = token.to(CPU).data<long>().ToArray();
            for (int b = 0; b < B; b++) extended[b].Add((int)ids[b]);
        }
        mtpCache.Advance(T);
        var draft = new long[B, d];
        for (int b = 0; b < B; b++) for (int j = 0; j < d; j++) draft[b, j] = extended[b][m + j];
        return (draft, qs.Count == 0 ? null : torch.stack(qs, 1).MoveToOuterDisposeScope());   // q: [B, d, V]
    }

    /// <summary>A drafter's proposal for every row still generating (rows that are done get token 0 and a one-hot q).</summary>
    static (long[,] Tokens, Tensor? Q) DraftWithFunc(DraftSampler drafter, List<int>[] seqs, int[] pad, bool[] done, int d, int V, bool greedy,
                                                     torch.Generator? generator, Device device)
    {
        using var scope = torch.NewDisposeScope();
        int B = seqs.Length;
        var draft = new long[B, d];
        var rows = new Tensor[B];
        for (int b = 0; b < B; b++)
        {
            int[] tokens = new int[d];
            Tensor? probs = null;
            if (!done[b]) (tokens, probs) = drafter(seqs[b].Skip(pad[b]).ToList(), d, generator);
            if (tokens.Length != d) throw new Runtime.WhaleArgumentException("drafter", tokens.Length, $"must return exactly {d} tokens");
            if (tokens.Any(t => t < 0 || t >= V)) throw new Runtime.WhaleArgumentException("drafter token", tokens.First(t => t < 0 || t >= V), $"must be in [0, vocab_size = {V})");
            for (int j = 0; j < d; j++) draft[b, j] = tokens[j];
            if (greedy) continue;
            rows[b] = probs is null
                ? torch.nn.functional.one_hot(torch.tensor(tokens.Select(t => (long)t).ToArray(), device: device), V).to_type(ScalarType.Float32)  // [d, V]
                : probs.to(device).to_type(ScalarType.Float32).reshape(d, V);
        }
        return (draft, greedy ? null : torch.stack(rows, 0).MoveToOuterDisposeScope());        // q: [B, d, V]
    }
}
