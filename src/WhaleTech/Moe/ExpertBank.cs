// The routed experts' weights stored stacked, for inference without re-stacking:
//   GateUp [E, 2F, D]  rows 0..F−1 of expert e are its gate_proj.weight, rows F..2F−1 its up_proj.weight
//   Down   [E, D, F]   expert e's down_proj.weight
// Each expert keeps its own nn.Linear and `weight` Parameter (same object, same Hugging Face name); the bank
// re-points that Parameter's storage at its slice of the stack with set_ (under no_grad), so optimizers, the
// state dict and checkpoint loading (in-place copy_) keep working and always see the bank's memory. Built on
// the first no-grad call that needs it; rebuilt when a Parameter object, dtype, device or slice offset no longer
// matches (for example after module.to(...)); that check reads 3E Parameters (a few µs each in TorchSharp), so
// Sorted consults the bank only for many rows per expert. Only for plain bias-free nn.Linear experts: a custom LinearFactory
// (FP8 simulation …) has its own forward, which the fused GEMMs would bypass.
// Shapes: E experts, F expert width, D hidden.
using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Moe;

internal sealed class ExpertBank : IDisposable
{
    static readonly ConditionalWeakTable<Expert, ExpertBank> Banks = new();

    /// <summary>[E, 2F, D]: gate rows then up rows of every expert.</summary>
    public Tensor GateUp { get; }
    /// <summary>[E, D, F].</summary>
    public Tensor Down { get; }
    /// <summary>F.</summary>
    public long Width { get; }

    readonly Tensor[] _tied;   // the 3E Parameter objects, in (gate, up, down) order per expert
    readonly Tensor[] _gateUpRows, _downRows;   // per-expert [2F, D] and [D, F] views, made once

    /// <summary>Below this many (token, expert) rows per expert on average, Sorted inference is op-bound (decode)
    /// and chooses between the padded batched form and a plain loop with <see cref="PaddedIsCheaper"/>.</summary>
    public const long MinRowsPerExpert = 16;

    /// <summary>Rough cost-model constants for the 1-thread CPU: a fixed overhead per TorchSharp op (an estimate, not a
    /// committed measurement) and a weight-streaming rate of the order of the copy bandwidth the `generate` suite
    /// measured (copy_gbps in benchmarks/results/cpu-amd-epyc-1t/generate.md).</summary>
    const double OpSeconds = 5e-6, BytesPerSecond = 20e9;

    /// <summary>Decode cost model: the padded form saves ~5 ops per active expert beyond its fixed ~25 but reads the
    /// idle experts' weights too (3·F·D elements each).</summary>
    public static bool PaddedIsCheaper(IReadOnlyList<Expert> experts, int active, long elementSize)
    {
        if (experts.Count == 0) return false;
        double idleBytes = (experts.Count - active) * 3.0 * experts[0].Width * experts[0].Hidden * elementSize;
        return idleBytes / BytesPerSecond < (5.0 * active - 25) * OpSeconds;
    }

    ExpertBank(Tensor gateUp, Tensor down, long width, Tensor[] tied)
    {
        GateUp = gateUp; Down = down; Width = width; _tied = tied;
        _gateUpRows = Enumerable.Range(0, (int)gateUp.shape[0]).Select(e => gateUp[e].DetachFromDisposeScope()).ToArray();
        _downRows = Enumerable.Range(0, (int)down.shape[0]).Select(e => down[e].DetachFromDisposeScope()).ToArray();
    }

    /// <summary>The bank of <paramref name="experts"/> (built or rebuilt as needed), or null when they are not
    /// plain bias-free nn.Linear experts of one shape. Call only without autograd.</summary>
    public static ExpertBank? For(IReadOnlyList<Expert> experts)
    {
        if (experts.Count == 0) return null;
        // Fast check (reading a Linear's weight costs µs in TorchSharp, so not all 3E): the first and last experts'
        // Parameters are the tied objects at their slices. module.to(...) replaces every Parameter; load and
        // optimizer steps write in place. Assigning one expert's weight by hand is not detected.
        if (Banks.TryGetValue(experts[0], out var bank) && bank._tied.Length == 3 * experts.Count && bank.Holds(experts, 0) && bank.Holds(experts, experts.Count - 1))
            return bank;
        var weights = new Tensor[3 * experts.Count];
        for (int e = 0; e < experts.Count; e++)
        {
            if (PlainWeight(experts[e].gate_proj) is not { } g || PlainWeight(experts[e].up_proj) is not { } u || PlainWeight(experts[e].down_proj) is not { } d)
                return null;
            (weights[3 * e], weights[3 * e + 1], weights[3 * e + 2]) = (g, u, d);
        }
        var fresh = Tie(weights);
        if (fresh is null) return null;
        if (bank is not null) { Banks.Remove(experts[0]); bank.Dispose(); }
        Banks.Add(experts[0], fresh);
        return fresh;
    }

    /// <summary>A contiguous CPU float32 [N, D] tensor: what TokenRows and the bank's C# passes read directly.</summary>
    public static bool CpuFloat32Rows(Tensor x) => x.device_type == DeviceType.CPU && x.dtype == ScalarType.Float32 && x.dim() == 2 && x.is_contiguous();

    /// <summary>Expert e's gate and up rows, [2F, D] (a view of <see cref="GateUp"/>).</summary>
    public Tensor GateUpOf(int e) => _gateUpRows[e];
    /// <summary>Expert e's down_proj weight, [D, F] (a view of <see cref="Down"/>).</summary>
    public Tensor DownOf(int e) => _downRows[e];
    /// <summary>The Parameter object tied to the bank: expert e's gate_proj (part 0), up_proj (1) or down_proj (2) weight.</summary>
    public Tensor Tied(int e, int part) => _tied[3 * e + part];

    /// <summary>g · expert e on its tokens <paramref name="x"/> [c, D]: down(g · silu(gate x) · up x), gate and up as one
    /// GEMM, the combine weights <paramref name="rowWeight"/> [c, 1] scaling the F-wide hidden (Expert.forward(x, g)).</summary>
    public Tensor Forward(int e, Tensor x, Tensor rowWeight)
    {
        using var gu = Core.PackedGemm.LinearOrTorch(x, _gateUpRows[e]);              // [c, 2F]
        if (RoutedDecodeKernel.GatedHidden(gu, rowWeight, Width) is { } fused)           // one pass on an AVX-512 CPU
            using (fused) return Core.PackedGemm.LinearOrTorch(fused, _downRows[e]);     // [c, D]
        using var gate = gu.narrow(1, 0, Width);
        using var up = gu.narrow(1, Width, Width);
        using var h = nn.functional.silu(gate).mul_(up).mul_(rowWeight);               // [c, F]
        return Core.PackedGemm.LinearOrTorch(h, _downRows[e]);                        // [c, D]
    }

    /// <summary>The `weight` of a plain bias-free linear (nn.Linear or SmallBatchLinear), or null for anything else.</summary>
    internal static Tensor? PlainWeight(nn.Module<Tensor, Tensor> m)
        => m switch
        {
            Core.SmallBatchLinear { bias: null } lin => lin.weight,
            TorchSharp.Modules.Linear { bias: null } lin => lin.weight,
            _ => null,
        };

    bool Holds(IReadOnlyList<Expert> experts, int e)
    {
        long gateStride = 2 * Width * GateUp.shape[2], downStride = Down.shape[1] * Down.shape[2];
        var parts = new[] { experts[e].gate_proj, experts[e].up_proj, experts[e].down_proj };
        for (int part = 0; part < 3; part++)
        {
            var w = PlainWeight(parts[part]);
            if (w is null || !ReferenceEquals(w, _tied[3 * e + part]) || w.dtype != GateUp.dtype || w.device_type != GateUp.device_type || w.device_index != GateUp.device_index)
                return false;
            long expected = part == 2 ? e * downStride : e * gateStride + part * Width * GateUp.shape[2];
            if (w.storage_offset() != expected) return false;
        }
        return true;
    }

    static ExpertBank? Tie(Tensor[] w)
    {
        long f = w[0].shape[0], d = w[0].shape[1];
        for (int i = 0; i < w.Length; i++)
        {
            var expected = i % 3 == 2 ? new[] { d, f } : new[] { f, d };
            if (!w[i].shape.SequenceEqual(expected) || w[i].dtype != w[0].dtype || w[i].device_type != w[0].device_type || w[i].device_index != w[0].device_index) return null;
        }
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        int experts = w.Length / 3;
        var gateUp = torch.stack(Enumerable.Range(0, experts).Select(e => torch.cat([w[3 * e], w[3 * e + 1]], 0)), 0); // [E, 2F, D]
        var down = torch.stack(Enumerable.Range(0, experts).Select(e => w[3 * e + 2]), 0);                             // [E, D, F]
        for (int e = 0; e < experts; e++)
        {
            w[3 * e].set_(gateUp[e].narrow(0, 0, f));
            w[3 * e + 1].set_(gateUp[e].narrow(0, f, f));
            w[3 * e + 2].set_(down[e]);
        }
        return new ExpertBank(gateUp.MoveToOuterDisposeScope().DetachFromDisposeScope(), down.MoveToOuterDisposeScope().DetachFromDisposeScope(), f, w);
    }

    public void Dispose()
    {
        foreach (var t in _gateUpRows.Concat(_downRows)) t.Dispose();
        GateUp.Dispose(); Down.Dispose();
    }
}
