// The shared experts of a training step as ONE autograd node with a hand-written backward (CPU float32):
//
//   h'_t += Σ_{i=1..Ns} FFN^(s)_i(u_t)      (DeepSeek-V3 eq. 12; HF merges the Ns shared experts into one SwiGLU of width Ns·F)
//
// The shared SwiGLU runs on every token with weight 1, so it is ExpertChain.cs on all N rows: gate and up as one GEMM
// over [W_g; W_u] (concatenated per call, 2·Ns·F·D floats — 1 MB at D 512, width 256), the SwiGLU's elementwise
// forward and backward in C#, ∂W_g and ∂W_u from one GEMM. Through autograd the same expert is two linears, silu,
// a multiply and a linear, ~5 elementwise passes over [N, Ns·F] and separate gate/up products in both directions.
// Results equal autograd to float32 rounding (tests), not bit for bit.
//
// Applies in training (autograd on) on CPU float32 with plain bias-free linears and SmallGemm's switch on
// (WHALETECH_SMALL_GEMM=0 turns every CPU kernel off); else null and DeepSeekMoE runs the module. Inference over more
// than SmallGemm.MaxRows rows runs the same chain's forward without a node (Core/PackedGemm's GEMMs instead of the
// module's libtorch linears); at decode sizes the module's linears pick SmallGemm's kernels. Double backward is not
// supported.
// Shapes: N tokens, D hidden, F' = Ns·F the shared width.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Moe;

internal sealed class SharedExpertFunction : torch.autograd.SingleTensorFunction<SharedExpertFunction>
{
    public override string Name => "SharedExpert";

    /// <summary>Forwards through this node in this process (tests check that a path really used it).</summary>
    public static long Calls => Interlocked.Read(ref _calls);
    static long _calls;

    /// <summary><paramref name="shared"/>(x) [N, D]: one autograd node in training, the chain's forward in inference over
    /// more than SmallGemm.MaxRows rows; null where neither applies (the caller runs the module).</summary>
    public static Tensor? Apply(Tensor x, Expert shared)
    {
        if (!Core.SmallGemm.Enabled) return null;
        if (torch.is_grad_enabled()) return ApplyKernel(x, shared);
        return x.dim() == 2 && x.shape[0] > Core.SmallGemm.MaxRows ? InferKernel(x, shared) : null;
    }

    /// <summary><see cref="Apply"/>'s training node without the hardware and autograd switches (tests run it on any CPU).</summary>
    internal static Tensor? ApplyKernel(Tensor x, Expert shared)
        => Weights(x, shared) is var (gate, up, down) ? apply(x, gate, up, down) : null;

    /// <summary>The inference forward (no node): x, gate, up and down need no gradient.</summary>
    internal static Tensor? InferKernel(Tensor x, Expert shared)
    {
        if (Weights(x, shared) is not var (gate, up, down)) return null;
        using var scope = torch.NewDisposeScope();
        using var gateUp = torch.cat([gate, up], 0);                          // [2F', D]
        using var gu = torch.empty([x.shape[0], 2 * gate.shape[0]], dtype: ScalarType.Float32);   // [N, 2F']
        return ExpertChain.Forward(x.contiguous(), gateUp, down, null, gu).MoveToOuterDisposeScope();   // [N, D]
    }

    /// <summary>The shared expert's gate, up and down weights where the chain applies to x, else null.</summary>
    static (Tensor Gate, Tensor Up, Tensor Down)? Weights(Tensor x, Expert shared)
    {
        if (x.device_type != DeviceType.CPU || x.dtype != ScalarType.Float32 || x.dim() != 2 || x.shape[1] != shared.Hidden
            || shared.Width > int.MaxValue)
            return null;
        if (ExpertBank.PlainWeight(shared.gate_proj) is not { } gate || ExpertBank.PlainWeight(shared.up_proj) is not { } up
            || ExpertBank.PlainWeight(shared.down_proj) is not { } down)
            return null;
        foreach (var w in new[] { gate, up, down })
            if (w.device_type != DeviceType.CPU || w.dtype != ScalarType.Float32) return null;
        return (gate, up, down);
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (x, gate, up, down) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3]);
        var xc = x.contiguous();                                              // [N, D]
        var gateUp = torch.cat([gate, up], 0);                                // [2F', D]
        var gu = torch.empty([x.shape[0], 2 * gate.shape[0]], dtype: ScalarType.Float32);   // [N, 2F']
        var y = ExpertChain.Forward(xc, gateUp, down, null, gu);              // [N, D]
        ctx.save_for_backward([xc, gu, gateUp, down]);
        Interlocked.Increment(ref _calls);
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor dy)
    {
        var saved = ctx.get_saved_variables();
        var (x, gu, gateUp, down) = (saved[0], saved[1], saved[2], saved[3]);
        long f = down.shape[1];
        var (dx, dGateUp, dDown) = ExpertChain.Backward(dy.contiguous(), x, gu, null, gateUp, down, null);
        foreach (var t in saved) t.Dispose();
        return [dx, dGateUp.narrow(0, 0, f), dGateUp.narrow(0, f, f), dDown];   // x, gate, up, down
    }
}
