// The experts' products of the PaddedBmm and GroupedMm dispatch paths on the CPU (float32), through Core/PackedGemm:
//
//   y[rows of group g] = a[rows of group g] · b[g]          a [P, K] with groups of counts[g] consecutive rows, b [G, K, N]
//
// PaddedBmm's bmm over a capacity-padded [E, C, ·] buffer is the case of G equal groups of C rows; GroupedMm's
// torch._grouped_mm is the general case. On a CPU both run libtorch's BLAS (AVX2 kernels on the reference EPYC, about
// half of its 512-bit FMA rate), so with autograd on this is one autograd node with a hand-written backward:
//   forward    y_g = a_g · b_g                       [c_g, N]
//   backward   ∂a_g = ∂y_g · b_gᵀ                    [c_g, K]
//              ∂b_g = a_gᵀ · ∂y_g                    [K, N]   (zero for an empty group)
// and without autograd the same forward products directly. b may be any strided view (a transposed stack of expert
// weights); its gradient flows back through that view to the experts' Parameters. Results equal bmm / _grouped_mm to
// float32 rounding (another summation order; tests). Double backward is not supported.
// Applies where SmallGemm's switch is on (AVX-512; WHALETECH_SMALL_GEMM=0 turns it off), on CPU float32 2-D a and 3-D b;
// else null and the caller runs libtorch.
// Shapes: P rows in all, G groups, K reduced dimension, N outputs, c_g rows of group g.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Moe;

internal sealed class GroupedGemmFunction : torch.autograd.SingleTensorFunction<GroupedGemmFunction>
{
    public override string Name => "GroupedGemm";

    /// <summary>Products computed through this path in this process (tests check that a path really used it).</summary>
    public static long Calls => Interlocked.Read(ref _calls);
    static long _calls;

    sealed record Groups(long[] Counts);

    /// <summary>y [P, N] with y_g = a_g · b[g], or null where this path does not apply.</summary>
    public static Tensor? Apply(Tensor a, Tensor b, long[] counts)
        => Core.SmallGemm.Enabled ? ApplyKernel(a, b, counts) : null;

    /// <summary>a [G, C, K] bmm b [G, K, N] as G groups of C rows, or null where this path does not apply.</summary>
    public static Tensor? Bmm(Tensor a, Tensor b)
    {
        if (a.dim() != 3) return null;
        long g = a.shape[0], c = a.shape[1];
        a = a.contiguous();                                                   // a view for a contiguous a (autograd records a copy otherwise)
        var counts = new long[g];
        Array.Fill(counts, c);
        return Apply(a.view(g * c, a.shape[2]), b, counts)?.view(g, c, -1);
    }

    /// <summary><see cref="Apply"/> without the hardware switch (tests run it on any CPU).</summary>
    internal static Tensor? ApplyKernel(Tensor a, Tensor b, long[] counts)
    {
        if (a.dim() != 2 || b.dim() != 3 || a.shape[1] != b.shape[1] || b.shape[0] != counts.Length || counts.Sum() != a.shape[0]
            || counts.Any(c => c < 0))
            return null;
        foreach (var t in new[] { a, b })
            if (t.device_type != DeviceType.CPU || t.dtype != ScalarType.Float32) return null;
        if (torch.is_grad_enabled() && (a.requires_grad || b.requires_grad)) return apply(a, b, new Groups(counts));
        return Forward(a, b, counts);
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (a, b, groups) = ((Tensor)vars[0], (Tensor)vars[1], (Groups)vars[2]);
        ctx.save_for_backward([a, b]);
        ctx.save_data("groups", groups);
        return Forward(a, b, groups.Counts);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor dy)
    {
        var counts = ((Groups)ctx.get_data("groups")).Counts;
        var saved = ctx.get_saved_variables();
        var (a, b) = (saved[0], saved[1]);
        var da = torch.empty(a.shape, dtype: ScalarType.Float32);            // [P, K]
        var db = torch.zeros(b.shape, dtype: ScalarType.Float32);            // [G, K, N]
        long row = 0;
        for (int g = 0; g < counts.Length; g++)
        {
            long c = counts[g];
            if (c == 0) continue;
            using var scope = torch.NewDisposeScope();
            var dyg = dy.narrow(0, row, c);                                   // [c, N]
            var bg = b[g];                                                    // [K, N]
            if (Core.PackedGemm.Mm(dyg, bg.t(), into: da.narrow(0, row, c)) is null) da.narrow(0, row, c).copy_(dyg.mm(bg.t()));
            var ag = a.narrow(0, row, c);                                     // [c, K]
            if (Core.PackedGemm.Mm(ag.t(), dyg, into: db[g]) is null) db[g].copy_(ag.t().mm(dyg));
            row += c;
        }
        foreach (var t in saved) t.Dispose();
        return [da, db, null!];
    }

    /// <summary>The forward products, group by group, into one [P, N] tensor.</summary>
    static Tensor Forward(Tensor a, Tensor b, long[] counts)
    {
        var y = torch.empty([a.shape[0], b.shape[2]], dtype: ScalarType.Float32);   // [P, N]
        long row = 0;
        for (int g = 0; g < counts.Length; g++)
        {
            long c = counts[g];
            if (c == 0) continue;
            using var scope = torch.NewDisposeScope();
            var yg = y.narrow(0, row, c);
            if (Core.PackedGemm.Mm(a.narrow(0, row, c), b[g], into: yg) is null) yg.copy_(a.narrow(0, row, c).mm(b[g]));
            row += c;
        }
        Interlocked.Increment(ref _calls);
        return y;
    }
}
