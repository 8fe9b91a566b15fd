// One weighted SwiGLU expert on its rows, forward and hand-written backward, for the CPU float32 training nodes
// (RoutedExpertsFunction: each routed expert on its tokens; SharedExpertFunction: the shared expert on all tokens):
//
//   FFN(x) = W_d (silu(W_g x) ⊙ W_u x)   (Shazeer 2020, eq. 6),   out = w · FFN(x)   (w: combine weights, or 1)
//
// With rows X [c, D], gate and up stacked as W_gu = [W_g; W_u] [2F, D], W_d [D, F]:
//   forward    [G | U] = X · W_guᵀ                  [c, 2F]  one GEMM for gate and up
//              H_w = w ⊙ silu(G) ⊙ U                [c, F]   SwiGluRows.Forward
//              out = H_w · W_dᵀ                     [c, D]
//   backward   from dO = ∂L/∂out                    [c, D]
//              dH_w = dO · W_d                       [c, F]
//              [∂G | ∂U], ∂w, H_w again              [c, 2F], [c], [c, F]   SwiGluRows.Backward, one pass:
//                                                   ∂U = w dH_w silu(G), ∂G = w dH_w U σ(G)(1 + G(1 − σ(G))), ∂w = Σ dH_w silu(G) U
//              ∂W_d = dOᵀ · H_w                      [D, F]
//              ∂W_gu = [∂G | ∂U]ᵀ · X                [2F, D]  one GEMM for both weights
//              ∂X = [∂G | ∂U] · W_gu                 [c, D]   one GEMM
// Six GEMMs (Core/PackedGemm's AVX-512 kernel where it applies, else libtorch's) and two passes over [c, F] in C#; the
// same chain through autograd is ~10 graph nodes with separate gate and up products and ~5 elementwise passes. Results
// equal autograd to float32 rounding (tests).
// Shapes: c rows, D hidden, F width.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Moe;

internal static unsafe class ExpertChain
{
    /// <summary>out [c, D] = w · FFN(X), writing [G | U] into <paramref name="gu"/> [c, 2F] (kept for the backward).</summary>
    /// <param name="w">[c] combine weights, or null for 1.</param>
    public static Tensor Forward(Tensor xe, Tensor gateUp, Tensor down, Tensor? w, Tensor gu)
    {
        using var scope = torch.NewDisposeScope();
        if (Core.PackedGemm.Mm(xe, gateUp.t(), into: gu) is null) gu.addmm_(xe, gateUp.t(), beta: 0);   // [c, 2F]
        var hw = WeightedHidden(gu, w, down.shape[1]);                        // [c, F]
        return Mm(hw, down.t()).MoveToOuterDisposeScope();                   // [c, D]
    }

    /// <summary>(∂X [c, D], ∂W_gu [2F, D], ∂W_d [D, F]) from dO [c, D]; ∂w [c] written into <paramref name="dw"/> when given.</summary>
    public static (Tensor Dx, Tensor DGateUp, Tensor DDown) Backward(Tensor dO, Tensor xe, Tensor gu, Tensor? w, Tensor gateUp, Tensor down, Tensor? dw)
    {
        using var scope = torch.NewDisposeScope();
        var dhw = Mm(dO, down);                                               // [c, F]
        var (dgu, hw) = SwiGluBackward(gu, w, dhw, dw, down.shape[1]);        // [c, 2F], [c, F]
        var dDown = Mm(dO.t(), hw);                                           // [D, F]
        var dGateUp = Mm(dgu.t(), xe);                                        // [2F, D]
        var dx = Mm(dgu, gateUp);                                             // [c, D]
        return (dx.MoveToOuterDisposeScope(), dGateUp.MoveToOuterDisposeScope(), dDown.MoveToOuterDisposeScope());
    }

    /// <summary>a · b through Core/PackedGemm (AVX-512) where it applies, else libtorch's mm.</summary>
    static Tensor Mm(Tensor a, Tensor b) => Core.PackedGemm.Mm(a, b) ?? a.mm(b);

    /// <summary>w ⊙ silu(G) ⊙ U [c, F] from [G | U] [c, 2F] and w [c] (null: 1).</summary>
    internal static Tensor WeightedHidden(Tensor gu, Tensor? w, long f)
    {
        long c = gu.shape[0];
        var hw = torch.empty([c, f], dtype: ScalarType.Float32);
        float* pgu = Core.SmallGemm.Data(gu), pw = w is null ? null : Core.SmallGemm.Data(w), ph = Core.SmallGemm.Data(hw);
        for (long i = 0; i < c; i++) SwiGluRows.Forward(pgu + i * 2 * f, ph + i * f, (int)f, pw is null ? 1f : pw[i]);
        GC.KeepAlive(gu); GC.KeepAlive(w);
        return hw;
    }

    /// <summary>[∂G | ∂U] [c, 2F] and the forward's H_w [c, F] again, from [G | U], w (null: 1) and dH_w [c, F], in one
    /// pass; ∂w [c] written into <paramref name="dw"/> when given.</summary>
    internal static (Tensor Dgu, Tensor Hw) SwiGluBackward(Tensor gu, Tensor? w, Tensor dhw, Tensor? dw, long f)
    {
        long c = gu.shape[0];
        var dgu = torch.empty([c, 2 * f], dtype: ScalarType.Float32);
        var hw = torch.empty([c, f], dtype: ScalarType.Float32);
        float* pgu = Core.SmallGemm.Data(gu), pw = w is null ? null : Core.SmallGemm.Data(w), pd = Core.SmallGemm.Data(dhw),
               pdgu = Core.SmallGemm.Data(dgu), ph = Core.SmallGemm.Data(hw), pdw = dw is null ? null : Core.SmallGemm.Data(dw);
        for (long i = 0; i < c; i++)
        {
            float dwi = SwiGluRows.Backward(pgu + i * 2 * f, pd + i * f, pdgu + i * 2 * f, ph + i * f, (int)f, pw is null ? 1f : pw[i]);
            if (pdw is not null) pdw[i] = dwi;
        }
        GC.KeepAlive(gu); GC.KeepAlive(w); GC.KeepAlive(dhw); GC.KeepAlive(dw);
        return (dgu, hw);
    }
}
