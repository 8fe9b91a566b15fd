// The routed experts of a training step as ONE autograd node with a hand-written backward (CPU float32):
//
//   y_t = Σ_{i ∈ TopK(t)} g_{i,t} · FFN_i(x_t),   FFN_i(x) = W_d,i (silu(W_g,i x) ⊙ W_u,i x)      (DeepSeekMoE eq. 9)
//
// Dispatch.Sorted's sum, over the (token, expert) pairs sorted by expert. Per expert e with c pairs (rows X [c, D] of
// its tokens, combine weights w [c]), ExpertChain.cs runs the chain:
//   forward    y[tokens] += w ⊙ FFN_e(X)            [c, D]   gate+up as one GEMM over the stacked bank's rows
//   backward   dO = ∂L/∂y[tokens]                    [c, D]   gathered
//              ∂X, ∂W_gu,e, ∂W_d,e, ∂w from dO       6 GEMMs in all, the SwiGLU's elementwise backward in one C# pass
//              ∂x[tokens] += ∂X                      in expert order
// Saved for the backward: x itself, [G | U] of all pairs [P, 2F], the weights and tokens. X and H_w are recomputed
// per expert (a [c, D] gather and a pass over [c, F]): a [P, D] copy of the rows (50 MB at 4,096 tokens, top-6, D 512)
// would cost more in fresh pages than the second gather does. Token rows move with TokenRows (index_select's copy,
// index_add_'s additions in the same order).
//
// Why: the same sum through autograd is ~10 graph nodes per expert (two linears, silu, two multiplies, a linear,
// index_add_), a [P, D] gather whose backward is a cat of 64 slices and a zero-filled index_add, and separate gate
// and up products forward and backward. Here each expert is 6 GEMMs (2 forward, 4 backward — gate and up fused) and
// two passes over [c, F] in C#; the GEMMs stay libtorch's. The results equal the autograd path to float32 rounding
// (tests: outputs and every gradient against the token loop), not bit for bit: gate and up are one GEMM, whose
// blocking may sum in another order than two, and the C# exp differs from libtorch's in the last bits.
//
// Applies where Dispatch.Sorted trains on CPU float32 with plain bias-free linear experts (a stacked ExpertBank; a
// custom LinearFactory such as FP8 simulation keeps the autograd path, whose forward it owns) and SmallGemm's switch
// is on (WHALETECH_SMALL_GEMM=0 turns all CPU kernels off). The expert weights' gradients are returned to autograd
// (their AccumulateGrad nodes add them to .grad as for any op). Double backward is not supported (create_graph).
// Shapes: N tokens, P = N·K (token, expert) pairs, D hidden, F expert width, E experts, c pairs of one expert.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Moe;

internal sealed unsafe class RoutedExpertsFunction : torch.autograd.SingleTensorFunction<RoutedExpertsFunction>
{
    public override string Name => "RoutedExperts";

    /// <summary>Forwards through this node in this process (tests check that a path really used it).</summary>
    public static long Calls => Interlocked.Read(ref _calls);
    static long _calls;

    /// <summary>What the backward needs besides saved tensors: the bank (per-expert weight views) and the counts.</summary>
    sealed record Routing(ExpertBank Bank, long[] Counts, int Experts);

    /// <summary>y [N, D] = the routed sum over the expert-sorted pairs, as one autograd node, or null where it does not
    /// apply (the caller runs the autograd form).</summary>
    /// <param name="x">[N, D] tokens.</param>
    /// <param name="token">[P] int64 token of each pair, pairs sorted by expert.</param>
    /// <param name="counts">pairs per expert, [E], summing to P.</param>
    /// <param name="weights">[P, 1] combine weight of each sorted pair.</param>
    public static Tensor? Apply(Tensor x, Tensor token, long[] counts, Tensor weights, IReadOnlyList<Expert> experts)
        => Core.SmallGemm.Enabled ? ApplyKernel(x, token, counts, weights, experts) : null;

    /// <summary><see cref="Apply"/> without the hardware switch (tests run it on any CPU).</summary>
    internal static Tensor? ApplyKernel(Tensor x, Tensor token, long[] counts, Tensor weights, IReadOnlyList<Expert> experts)
    {
        if (x.device_type != DeviceType.CPU || x.dtype != ScalarType.Float32 || x.dim() != 2 || weights.dtype != ScalarType.Float32
            || weights.device_type != DeviceType.CPU || token.device_type != DeviceType.CPU || counts.Length != experts.Count
            || token.dtype != ScalarType.Int64 || token.dim() != 1 || !token.is_contiguous() || token.shape[0] != counts.Sum()
            || !weights.shape.SequenceEqual(new[] { token.shape[0], 1L }))
            return null;
        if (!TokenRows.InRange(token, x.shape[0]))
            throw new Runtime.WhaleArgumentException("token", "an id outside [0, N)", $"must index the {x.shape[0]} rows of x");
        ExpertBank? bank;
        using (torch.no_grad()) bank = ExpertBank.For(experts);
        if (bank is null || bank.GateUp.shape[2] != x.shape[1] || bank.Width > int.MaxValue) return null;
        // The experts' Parameters are inputs, so autograd routes their gradients (and knows the node needs a backward);
        // the routing (bank and counts) rides along as a non-tensor input.
        var inputs = new object[4 + 3 * experts.Count];
        (inputs[0], inputs[1], inputs[2], inputs[3]) = (x, weights, token, new Routing(bank, counts, experts.Count));
        for (int e = 0; e < experts.Count; e++)
            for (int part = 0; part < 3; part++) inputs[4 + 3 * e + part] = bank.Tied(e, part);
        return apply(inputs);
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (x, weights, token, r) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Routing)vars[3]);
        long n = x.shape[0], d = x.shape[1], f = r.Bank.Width, pairs = token.shape[0];
        var xc = x.contiguous();                                              // [N, D]
        var gu = torch.empty([pairs, 2 * f], dtype: ScalarType.Float32);     // [P, 2F]
        var w = weights.reshape(-1).contiguous();                             // [P]
        var y = torch.zeros([n, d], dtype: ScalarType.Float32);               // [N, D]
        long* tokens = (long*)Core.SmallGemm.Data(token);
        long row = 0;
        for (int e = 0; e < r.Experts; e++)
        {
            long c = r.Counts[e];
            if (c == 0) continue;
            using var scope = torch.NewDisposeScope();
            var xe = TokenRows.Gather(xc, tokens + row, c);                   // [c, D] its tokens' rows
            TokenRows.Add(y, tokens + row, ExpertChain.Forward(xe, r.Bank.GateUpOf(e), r.Bank.DownOf(e), w.narrow(0, row, c), gu.narrow(0, row, c)));
            row += c;
        }
        GC.KeepAlive(token);
        ctx.save_for_backward([xc, gu, w, token]);
        ctx.save_data("routing", r);
        Interlocked.Increment(ref _calls);
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor dy)
    {
        var r = (Routing)ctx.get_data("routing");
        var saved = ctx.get_saved_variables();
        var (x, gu, w, token) = (saved[0], saved[1], saved[2], saved[3]);
        long f = r.Bank.Width, pairs = token.shape[0];
        var dyc = dy.contiguous();                                            // [N, D] (the grad of a sum arrives expanded)
        var dx = torch.zeros([dy.shape[0], dy.shape[1]], dtype: ScalarType.Float32);   // [N, D]
        long* tokens = (long*)Core.SmallGemm.Data(token);
        var dw = torch.empty([pairs, 1], dtype: ScalarType.Float32);          // [P, 1]
        var grads = new List<Tensor>(4 + 3 * r.Experts) { dx, dw, null!, null! };   // x, weights, token, routing
        var weightGrads = new Tensor[3 * r.Experts];                          // null: an expert without tokens gets none
        long row = 0;
        for (int e = 0; e < r.Experts; e++)
        {
            long c = r.Counts[e];
            if (c == 0) continue;
            using var scope = torch.NewDisposeScope();
            var dO = TokenRows.Gather(dyc, tokens + row, c);                  // [c, D]
            var xe = TokenRows.Gather(x, tokens + row, c);                    // [c, D], gathered again
            var (dxe, dGateUp, dDown) = ExpertChain.Backward(dO, xe, gu.narrow(0, row, c), w.narrow(0, row, c),
                                                             r.Bank.GateUpOf(e), r.Bank.DownOf(e), dw.narrow(0, row, c));
            TokenRows.Add(dx, tokens + row, dxe);                             // dx[tokens] += [c, D]
            weightGrads[3 * e] = dGateUp.narrow(0, 0, f).MoveToOuterDisposeScope();
            weightGrads[3 * e + 1] = dGateUp.narrow(0, f, f).MoveToOuterDisposeScope();
            weightGrads[3 * e + 2] = dDown.MoveToOuterDisposeScope();
            row += c;
        }
        grads.AddRange(weightGrads);
        GC.KeepAlive(token);
        foreach (var t in saved) t.Dispose();
        return grads;
    }
}
