// Sending tokens to their experts and adding the weighted answers back: y_t = Σ_{i ∈ TopK(t)} g_{i,t} · FFN_i(x_t)
// (DeepSeekMoE 2024 eq. 9, DeepSeek-V3 eq. 12 without the shared experts). No token is ever dropped.
//
// Four paths that compute the same sum (tests check outputs and gradients agree to 1e-5 in fp32):
//   TokenLoop   the plainest reading: for every token, for every chosen expert, add g · FFN(x). Slow; for tests.
//   ExpertLoop  DeepSeek-V3's inference/model.py: for every expert, gather its tokens, run it, index_add back.
//               One small matmul per expert and the tokens are gathered with a data-dependent `where`.
//   Sorted      sort the N·K (token, expert) pairs by expert so each expert's tokens are one contiguous slice,
//               one gather, one `split` into the slices (one backward node, not one zero-filled [N·K, D]
//               gradient per `narrow`; without autograd one small gather per expert instead, and with only a
//               few rows per expert — decode — either PaddedBmm's batched form over the stacked bank or the
//               plainest loop, by a cost model: ExpertBank.PaddedIsCheaper), one matmul chain per non-empty slice, added in
//               place into y (index_add_). The combine weight scales the F-wide hidden before down_proj
//               (g · down(h) = down(g · h), down_proj being linear): [c, F] instead of [c, D] elements to scale,
//               forward and backward (PaddedBmm and GroupedMm do the same; the decode-size loop weights its
//               concatenated [N·K, D] outputs in one Combine, as before). A single host sync (the per-expert counts, to cut the slices) per
//               forward instead of one per expert. Decode on an AVX-512 CPU without autograd skips all of that: the
//               routed sum runs in one C# pass over the stacked bank (RoutedDecodeKernel.cs, the same products).
//               Training on such a CPU in float32 runs the same per-expert chain as ONE autograd node with a hand-written
//               backward (RoutedExpertsFunction.cs: gate and up as one GEMM forward and backward, no [N·K, D] gather,
//               ~10 fewer graph nodes per expert); inference with many rows per expert gathers and adds the token rows in
//               C# (TokenRows.cs, the same copies and additions as index_select / index_add_).
//   PaddedBmm   like Sorted, then scatter the slices into a capacity-padded [E, C, D] buffer (C = largest
//               count, so nothing is dropped) and run all experts as three batched matmuls over stacked
//               weights. Uses each linear's `weight` directly, so it bypasses a LinearFactory's own forward
//               (for example FP8 simulation); use Sorted there.
//   GroupedMm   like Sorted, but the three expert GEMMs each run as ONE grouped GEMM over the sorted rows
//               (torch._grouped_mm via TorchScript, GroupedMatmul.cs): no padding, no per-expert launches.
//               Stacks the experts' `weight`s like PaddedBmm (same caveat for custom linears).
// PaddedBmm and GroupedMm run over consecutive groups of experts whose buffers stay below ChunkBytes (8 MiB): one
// [N·K, D] buffer at 4,096 tokens (50 MB) sits above glibc's 32 MiB mmap ceiling and landed on fresh pages every
// call (25k–80k page faults, ≈ 1.4 µs each); in groups they are reused from the heap. Same products, same order
// per token (benchmarks/results/cpu-amd-epyc-1t-quiet/moe-chunked/).
//
// Stacked weights without re-stacking (ExpertBank): under no_grad (inference) the experts' weights are stored
// stacked — gate and up as one [E, 2F, D] tensor, down as [E, D, F] — and every expert's own `weight` Parameter
// is re-pointed (set_) at its slice, so the Parameter objects, their Hugging Face names, optimizers and
// load/save (in-place copy_) are unchanged and see the same memory. PaddedBmm/GroupedMm then read the stack
// directly and Sorted runs gate+up as one GEMM per expert. With autograd on, the weights are stacked per call
// as before (torch.stack is what sends each expert its own gradient).
//
// Shapes: N tokens, D hidden, K experts per token, E experts, F expert width, C capacity (max tokens of an expert).
using TorchSharp;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Moe;

public enum MoeDispatch { TokenLoop, ExpertLoop, Sorted, PaddedBmm, GroupedMm }

public static class Dispatch
{
    /// <summary>y [N, D] = Σ_k weights[n, k] · experts[indices[n, k]](x[n]).</summary>
    /// <param name="x">[N, D] tokens.</param>
    /// <param name="indices">[N, K] int64 expert of each (token, slot).</param>
    /// <param name="weights">[N, K] combine weights (any float dtype; cast to x's).</param>
    public static Tensor Run(MoeDispatch path, Tensor x, Tensor indices, Tensor weights, IReadOnlyList<Expert> experts) => path switch
    {
        MoeDispatch.TokenLoop => TokenLoop(x, indices, weights, experts),
        MoeDispatch.ExpertLoop => ExpertLoop(x, indices, weights, experts),
        MoeDispatch.Sorted => Sorted(x, indices, weights, experts),
        MoeDispatch.PaddedBmm => PaddedBmm(x, indices, weights, experts),
        MoeDispatch.GroupedMm => GroupedMm(x, indices, weights, experts),
        _ => throw new WhaleArgumentException("dispatch", path, "must be TokenLoop, ExpertLoop, Sorted, PaddedBmm or GroupedMm"),
    };

    /// <summary>Reference: a loop over tokens and their K experts.</summary>
    public static Tensor TokenLoop(Tensor x, Tensor indices, Tensor weights, IReadOnlyList<Expert> experts)
    {
        using var scope = torch.NewDisposeScope();
        long n = x.shape[0], k = indices.shape[1];
        var idx = indices.cpu().data<long>().ToArray();                      // host copy of the routing
        var w = weights.to_type(x.dtype);
        var rows = new Tensor[n];
        for (long t = 0; t < n; t++)
        {
            var xt = x.narrow(0, t, 1);                                      // [1, D]
            Tensor yt = torch.zeros_like(xt);
            for (long j = 0; j < k; j++)
                yt = yt + w[t, j] * experts[(int)idx[t * k + j]].forward(xt);  // [1, D]
            rows[t] = yt;
        }
        return torch.cat(rows, 0).MoveToOuterDisposeScope();                 // [N, D]
    }

    /// <summary>DeepSeek's per-expert loop: gather each expert's tokens, run, index_add back.</summary>
    public static Tensor ExpertLoop(Tensor x, Tensor indices, Tensor weights, IReadOnlyList<Expert> experts)
    {
        using var scope = torch.NewDisposeScope();
        var counts = Counts(indices, experts.Count);                         // one host sync, to skip idle experts
        var w = weights.to_type(x.dtype);
        var y = torch.zeros_like(x);                                          // [N, D]
        for (int e = 0; e < experts.Count; e++)
        {
            if (counts[e] == 0) continue;
            using var step = torch.NewDisposeScope();                        // this expert's temporaries die here
            var hit = (indices == e).nonzero();                              // [n_e, 2] (token, slot)
            var token = hit[.., 0];                                          // [n_e]
            var slot = hit[.., 1];                                           // [n_e]
            var out_e = experts[e].forward(x.index_select(0, token));       // [n_e, D]
            var g = w.index(token, slot).unsqueeze(-1);                      // [n_e, 1]
            AddWeighted(y, token, out_e, g);                                 // y[token] += g · out_e, in place
        }
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>Fast path: sort (token, expert) pairs by expert, one matmul chain per contiguous slice.</summary>
    public static Tensor Sorted(Tensor x, Tensor indices, Tensor weights, IReadOnlyList<Expert> experts)
    {
        using var scope = torch.NewDisposeScope();
        bool grad = torch.is_grad_enabled();
        // Decode on an AVX-512 CPU: the whole routed sum in one pass over the stacked bank (RoutedDecodeKernel.cs).
        if (!grad && indices.numel() < ExpertBank.MinRowsPerExpert * experts.Count && RoutedDecodeKernel.Run(x, indices, weights, experts) is { } fused)
            return fused.MoveToOuterDisposeScope();
        var plan = Plan.Make(indices, experts.Count);
        if (!grad && plan.Token.shape[0] < ExpertBank.MinRowsPerExpert * experts.Count)
        {
            // Inference with a few rows per expert (decode) is op-bound: either the padded batched form over the stacked
            // bank (a fixed ~25 ops, but it reads every expert's weights, idle ones too) or one gather, one split, the
            // active experts' own 5-op SwiGLUs, one cat and one weighted index_add — whichever the cost model prefers.
            int active = plan.Counts.Count(c => c > 0);
            if (ExpertBank.PaddedIsCheaper(experts, active, x.ElementSize) && ExpertBank.For(experts) is { } small)
                return Padded(x, plan, weights, experts, small).MoveToOuterDisposeScope();
            var few = x.index_select(0, plan.Token).split(plan.Counts);           // [c, D] views
            var pieces = new List<Tensor>(active);
            for (int e = 0; e < experts.Count; e++)
                if (plan.Counts[e] > 0) pieces.Add(experts[e].forward(few[e]));
            if (pieces.Count == 0) return torch.zeros_like(x).MoveToOuterDisposeScope();    // no tokens
            return Combine(x, pieces.Count == 1 ? pieces[0] : torch.cat(pieces, 0), plan, weights).MoveToOuterDisposeScope();
        }
        var ws = SortedWeights(weights, plan, x.dtype);                       // [N·K, 1]
        // Training on a CPU in float32: the routed sum as one autograd node with a hand-written backward (RoutedExpertsFunction.cs).
        if (grad && RoutedExpertsFunction.Apply(x, plan.Token, plan.Counts, ws, experts) is { } node)
            return node.MoveToOuterDisposeScope();
        var bank = grad ? null : ExpertBank.For(experts);                      // inference: fused gate+up GEMM
        if (bank is not null && SmallGemm.Enabled && ExpertBank.CpuFloat32Rows(x))   // C# row copies and adds (TokenRows.cs)
            return InferenceOnBank(x, plan, ws, bank).MoveToOuterDisposeScope();
        // Elsewhere (autograd on other devices or dtypes, custom linears): training takes one gather [N·K, D] cut by one
        // split (one index_add in its backward); inference a [c, D] gather per expert, small enough for the allocator to
        // reuse warm memory (no fresh pages to fault in).
        var xParts = grad ? x.index_select(0, plan.Token).split(plan.Counts) : null;   // one slice per expert (views)
        var tokenParts = plan.Token.split(plan.Counts);
        var weightParts = ws.split(plan.Counts);
        var y = torch.zeros_like(x);                                          // [N, D]
        for (int e = 0; e < experts.Count; e++)
        {
            if (plan.Counts[e] == 0) continue;
            using var step = torch.NewDisposeScope();                        // this expert's temporaries die here
            var xe = xParts?[e] ?? x.index_select(0, tokenParts[e]);         // [c, D]
            var out_e = bank is null ? experts[e].forward(xe, weightParts[e]) : bank.Forward(e, xe, weightParts[e]); // [c, D], weighted
            y.index_add_(0, tokenParts[e], out_e, 1);
        }
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>Sorted inference over the bank with the token rows gathered and added back in C# (TokenRows: the same
    /// copies and additions as index_select and index_add_, without their per-row setup).</summary>
    static unsafe Tensor InferenceOnBank(Tensor x, Plan plan, Tensor ws, ExpertBank bank)
    {
        var y = torch.zeros_like(x);                                          // [N, D]
        long* tokens = (long*)SmallGemm.Data(plan.Token);
        long row = 0;
        for (int e = 0; e < plan.Counts.Length; e++)
        {
            long c = plan.Counts[e];
            if (c == 0) continue;
            using var step = torch.NewDisposeScope();                        // this expert's temporaries die here
            var xe = TokenRows.Gather(x, tokens + row, c);                   // [c, D]
            TokenRows.Add(y, tokens + row, bank.Forward(e, xe, ws.narrow(0, row, c)));   // y[tokens] += [c, D], weighted
            row += c;
        }
        GC.KeepAlive(plan.Token);
        return y;
    }

    /// <summary>Fast path: capacity-padded [E, C, D] buffer and three batched matmuls over stacked expert weights.</summary>
    public static Tensor PaddedBmm(Tensor x, Tensor indices, Tensor weights, IReadOnlyList<Expert> experts)
    {
        using var scope = torch.NewDisposeScope();
        var plan = Plan.Make(indices, experts.Count);
        var bank = torch.is_grad_enabled() ? null : ExpertBank.For(experts);
        return Padded(x, plan, weights, experts, bank).MoveToOuterDisposeScope();
    }

    static Tensor Padded(Tensor x, Plan plan, Tensor weights, IReadOnlyList<Expert> experts, ExpertBank? bank)
    {
        long n = x.shape[0], d = x.shape[1];
        var ws = SortedWeights(weights, plan, x.dtype).squeeze(-1);           // [N·K]
        // Padding slots read (and later write) an extra zero row N, so each buffer is one gather (no zero-filled
        // [E·C, D] buffer, no [N·K, D] gather in between) and the combine one weighted index_add_.
        var xExt = torch.cat([x, torch.zeros(1, d, dtype: x.dtype, device: x.device)], 0);                 // [N+1, D]
        var y = torch.zeros(n + 1, d, dtype: x.dtype, device: x.device);                                  // row N collects the padding
        foreach (var (e0, e1, r0, rows) in Chunks(plan.Counts, BufferRowBytes(x, experts), padded: true))
        {
            using var chunkScope = torch.NewDisposeScope();   // autograd keeps what it saved; the rest goes now
            int ec = e1 - e0;
            long capacity = Math.Max(1, plan.Counts[e0..e1].Max());          // C of this group: nothing is dropped
            // Slot of each sorted pair inside the group's padded buffer: (e − e0)·C + (its position among expert e's
            // tokens), from the host counts (one small copy to the device instead of a chain of index arithmetic).
            var slots = new long[rows];
            for (int e = e0, i = 0; e < e1; e++)
                for (long j = 0; j < plan.Counts[e]; j++) slots[i++] = (e - e0) * capacity + j;
            var slot = torch.tensor(slots, device: x.device);                                               // [R]
            var slotToken = torch.full(ec * capacity, n, dtype: ScalarType.Int64, device: x.device)
                .index_copy_(0, slot, plan.Token.narrow(0, r0, rows));                                      // [E_c·C]
            var buffer = xExt.index_select(0, slotToken).view(ec, capacity, d);                            // [E_c, C, D]
            var (h, wDown) = GroupHidden(buffer, Bmm, bank, experts, e0, ec);   // [E_c, C, F], [E_c, D, F]
            var slotWeight = torch.zeros(ec * capacity, dtype: x.dtype, device: x.device)
                .index_copy_(0, slot, ws.narrow(0, r0, rows)).view(ec, capacity, 1);   // [E_c, C, 1], 0 on padding
            var weighted = ScaleRows(h, slotWeight);                          // [E_c, C, F]: g · h, as Sorted does
            var out_ = Bmm(weighted, wDown.transpose(1, 2)).view(ec * capacity, d);   // [E_c·C, D], weighted
            y.index_add_(0, slotToken, out_, 1);                              // same order per token as the sorted pairs
        }
        return y.narrow(0, 0, n);                                             // [N, D]
    }

    /// <summary>Fast path: rows sorted by expert, each of the three expert GEMMs as one grouped GEMM (torch._grouped_mm),
    /// over consecutive groups of experts whose buffers stay below <see cref="ChunkBytes"/>.</summary>
    public static Tensor GroupedMm(Tensor x, Tensor indices, Tensor weights, IReadOnlyList<Expert> experts)
    {
        using var scope = torch.NewDisposeScope();
        var plan = Plan.Make(indices, experts.Count);
        var bank = torch.is_grad_enabled() ? null : ExpertBank.For(experts);
        var ws = SortedWeights(weights, plan, x.dtype);                                          // [N·K, 1]
        var y = torch.zeros_like(x);                                                             // [N, D]
        foreach (var (e0, e1, r0, rows) in Chunks(plan.Counts, BufferRowBytes(x, experts)))
        {
            using var chunkScope = torch.NewDisposeScope();   // autograd keeps what it saved; the rest goes now
            var counts = plan.Counts[e0..e1];
            var offs = GroupedMatmul.Offsets(counts, x.device);                                  // [E_c] int32 end rows
            var token = plan.Token.narrow(0, r0, rows);                                          // [R]
            var xs = x.index_select(0, token);                                                   // [R, D] grouped by expert
            var (h, wDown) = GroupHidden(xs, (a, b) => Grouped(a, b, offs, counts), bank, experts, e0, e1 - e0); // [R, F], [E_c, D, F]
            var weighted = ScaleRows(h, ws.narrow(0, r0, rows));                                 // [R, F]: g · h, as Sorted does
            var ys = Grouped(weighted, wDown.transpose(1, 2), offs, counts);                     // [R, D], weighted
            y.index_add_(0, token, ys, 1);
        }
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>The SwiGLU hidden g·(silu(input·W_gateᵀ) ⊙ input·W_upᵀ) of experts [e0, e0 + count) and their stacked
    /// down weights, through <paramref name="product"/> (PaddedBmm's bmm or GroupedMm's grouped GEMM): over the stacked
    /// bank without autograd (gate and up in one product), else over weights stacked for this group.</summary>
    static (Tensor Hidden, Tensor Down) GroupHidden(Tensor input, Func<Tensor, Tensor, Tensor> product, ExpertBank? bank,
                                                    IReadOnlyList<Expert> experts, int e0, int count)
    {
        if (bank is not null)
        {
            var gu = product(input, bank.GateUp.narrow(0, e0, count).transpose(1, 2));          // [..., 2F]: gate and up at once
            return (nn.functional.silu(gu.narrow(-1, 0, bank.Width)).mul_(gu.narrow(-1, bank.Width, bank.Width)),
                    bank.Down.narrow(0, e0, count));                                            // [..., F], [count, D, F]
        }
        var (wGate, wUp, down) = StackedWeights(experts.Skip(e0).Take(count).ToList());        // [count, F, D] ×2, [count, D, F]
        return (nn.functional.silu(product(input, wGate.transpose(1, 2))) * product(input, wUp.transpose(1, 2)), down);
    }

    /// <summary>Bytes of one row of the widest group buffer, [·, D] or [·, 2F] in fp32: what ChunkBytes bounds.</summary>
    static long BufferRowBytes(Tensor x, IReadOnlyList<Expert> experts)
        => 4 * Math.Max(x.shape[1], 2 * WeightOf(experts[0].up_proj).shape[0]);

    /// <summary>Upper bound on one [rows, ·] buffer of PaddedBmm/GroupedMm: experts are taken in consecutive groups
    /// whose buffers stay below it (an expert larger than it forms a group of its own). glibc hands a request above
    /// 32 MiB a fresh mmap every time (docs/moe.md, benchmarks/README.md "Page faults and glibc malloc"): ≈ 1.4 µs per
    /// 4 KiB page on these VMs, tens of thousands of page faults per call at 4,096 tokens, where buffers below it are
    /// reused from the heap.</summary>
    public static long ChunkBytes
    {
        get => _chunkBytesOnThisThread ?? _chunkBytes;
        set => _chunkBytes = value >= 4096 ? value
            : throw new WhaleArgumentException(nameof(ChunkBytes), value, "must be at least 4096 bytes (the default is 8 MiB)");
    }
    static long _chunkBytes = 8L << 20;

    /// <summary>A per-thread <see cref="ChunkBytes"/> (tests force many groups without touching other threads); null: the global one.</summary>
    [ThreadStatic] internal static long? _chunkBytesOnThisThread;

    /// <summary>Consecutive expert groups [e0, e1) and their sorted rows [r0, r0 + rows), each group's buffer rows ×
    /// rowBytes at most <see cref="ChunkBytes"/> (or one expert). Buffer rows: the group's rows, or with
    /// <paramref name="padded"/> its experts × their largest count. Empty experts join the group they fall in.</summary>
    static IEnumerable<(int E0, int E1, long R0, long Rows)> Chunks(long[] counts, long rowBytes, bool padded = false)
    {
        long limit = Math.Max(1, ChunkBytes / Math.Max(1, rowBytes));
        int e0 = 0; long r0 = 0, rows = 0, largest = 0;
        for (int e = 0; e < counts.Length; e++)
        {
            long size = padded ? (e - e0 + 1) * Math.Max(largest, counts[e]) : rows + counts[e];
            if (e > e0 && size > limit) { yield return (e0, e, r0, rows); e0 = e; r0 += rows; rows = 0; largest = 0; }
            rows += counts[e]; largest = Math.Max(largest, counts[e]);
        }
        if (rows > 0) yield return (e0, counts.Length, r0, rows);
    }

    /// <summary>a [E, C, K] bmm b [E, K, N]: through GroupedGemmFunction (Core/PackedGemm) on a CPU with AVX-512, else libtorch's bmm.</summary>
    static Tensor Bmm(Tensor a, Tensor b) => GroupedGemmFunction.Bmm(a, b) ?? a.bmm(b);

    /// <summary>The grouped product of the sorted rows: GroupedGemmFunction on a CPU with AVX-512, else torch._grouped_mm.</summary>
    static Tensor Grouped(Tensor a, Tensor b, Tensor offs, long[] counts) => GroupedGemmFunction.Apply(a, b, counts) ?? GroupedMatmul.Apply(a, b, offs);

    /// <summary>y [N, D] = Σ over sorted pairs of weight · ys, added back at each pair's token (weighted index_add).</summary>
    static Tensor Combine(Tensor x, Tensor ys, Plan plan, Tensor weights)
    {
        var y = torch.zeros_like(x);                                                             // [N, D]
        AddWeighted(y, plan.Token, ys, SortedWeights(weights, plan, x.dtype));
        return y;
    }

    /// <summary>The combine weights in the expert-sorted order of the pairs, [N·K, 1] in <paramref name="dtype"/>.</summary>
    static Tensor SortedWeights(Tensor weights, Plan plan, ScalarType dtype)
        => weights.reshape(-1).index_select(0, plan.Order).to_type(dtype).unsqueeze(-1);

    /// <summary>h · w (rows scaled by their combine weights); without autograd in h's own memory.</summary>
    static Tensor ScaleRows(Tensor h, Tensor w) => torch.is_grad_enabled() ? h * w : h.mul_(w);

    /// <summary>y[token[i]] += w[i] · out[i], in place. Without autograd the product is formed in out's own memory.</summary>
    static void AddWeighted(Tensor y, Tensor token, Tensor out_, Tensor w)
    {
        if (torch.is_grad_enabled()) { using var weighted = out_ * w; y.index_add_(0, token, weighted, 1); }
        else y.index_add_(0, token, out_.mul_(w), 1);
    }

    /// <summary>Tokens per expert of this routing, copied to the host (one sync).</summary>
    public static long[] Counts(Tensor indices, int experts)
    {
        using var c = indices.reshape(-1).bincount(null, experts);           // [E]
        using var host = c.cpu();
        return host.data<long>().ToArray();
    }

    /// <summary>Every expert's gate/up [F, D] and down [D, F] weights stacked along a new expert dim (differentiable).</summary>
    static (Tensor Gate, Tensor Up, Tensor Down) StackedWeights(IReadOnlyList<Expert> experts) =>
        (torch.stack(experts.Select(e => WeightOf(e.gate_proj)), 0),    // [E, F, D]
         torch.stack(experts.Select(e => WeightOf(e.up_proj)), 0),      // [E, F, D]
         torch.stack(experts.Select(e => WeightOf(e.down_proj)), 0));   // [E, D, F]

    static Tensor WeightOf(nn.Module<Tensor, Tensor> linear)
    {
        foreach (var (name, p) in linear.named_parameters())
            if (name == "weight") return p;
        throw new WhaleArgumentException("linear", linear.GetType().Name, "must register a `weight` parameter [out, in] for the PaddedBmm dispatch");
    }

    /// <summary>The expert-sorted order of the N·K (token, slot) pairs.</summary>
    sealed record Plan(Tensor Order, Tensor Token, Tensor Expert, long[] Counts)
    {
        public static Plan Make(Tensor indices, int experts)
        {
            long k = indices.shape[1];
            var flat = indices.reshape(-1);                                   // [N·K] expert of each pair
            var order = flat.sort(0, false, true).Indices;                    // [N·K] pairs sorted by expert (stable)
            var token = order.div(k, rounding_mode: RoundingMode.floor);      // [N·K] token of each sorted pair
            var expert = flat.index_select(0, order);                         // [N·K] ascending experts
            return new Plan(order, token, expert, Dispatch.Counts(indices, experts));
        }
    }
}
