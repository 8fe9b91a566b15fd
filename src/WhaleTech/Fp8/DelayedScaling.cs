// Delayed (history-based) per-tensor scaling, as in NVIDIA Transformer Engine's DelayedScaling recipe:
// the scale used at step t comes from the amax values recorded at the previous steps
//   scale_t = max(amax_{t−L}, …, amax_{t−1}) / max_fp8 · 2^margin
// and the amax of step t is appended to the history after use. This avoids a reduction before the cast
// (the amax is a by-product), but a sudden outlier larger than the history saturates. DeepSeek-V3 §3.3.2
// instead uses online (current) amax per 1×128 tile / 128×128 block; WhaleTech offers both to compare.
//
// Shapes: per-tensor only; scale [] (a 0-dim tensor).
using TorchSharp;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Fp8;

public sealed class DelayedScaling
{
    readonly Queue<double> _history = new();

    /// <param name="historyLength">L, how many past amax values are kept (TE default 1024; 16 is common).</param>
    /// <param name="margin">Extra headroom: the scale is multiplied by 2^margin.</param>
    public DelayedScaling(int historyLength = 16, int margin = 0)
    {
        HistoryLength = Guard.Positive(nameof(historyLength), historyLength);
        Margin = (int)Guard.InRange(nameof(margin), margin, 0, 32);
    }

    public int HistoryLength { get; }
    public int Margin { get; }

    /// <summary>The amax values recorded so far, oldest first.</summary>
    public IReadOnlyCollection<double> History => _history;

    /// <summary>The scale for the current step; with an empty history, the current tensor's own amax is used.</summary>
    public double Scale(Fp8Format format, double currentAmax, double amaxFloor = 1e-12)
    {
        double amax = _history.Count > 0 ? _history.Max() : currentAmax;
        return Math.Max(amax, amaxFloor) / format.MaxValue * Math.Pow(2, Margin);
    }

    /// <summary>Appends this step's amax, dropping the oldest beyond the history length.</summary>
    public void Record(double amax)
    {
        _history.Enqueue(amax);
        while (_history.Count > HistoryLength) _history.Dequeue();
    }

    /// <summary>Quantizes x with the delayed scale (saturating), then records x's amax.</summary>
    public Fp8Tensor Quantize(Tensor x, Fp8Format format, Fp8Scaling? scaling = null)
    {
        scaling ??= Fp8Scaling.Default;
        double amax = x.abs().max().to_type(ScalarType.Float64).item<double>();
        using var scale = torch.tensor(Scale(format, amax, scaling.AmaxFloor), dtype: ScalarType.Float32, device: x.device);
        var q = Fp8Quantizer.QuantizeWithScales(x, scale, format, Fp8Granularity.PerTensor, scaling with { Overflow = Fp8Overflow.Saturating });
        Record(amax);
        return q;
    }
}
