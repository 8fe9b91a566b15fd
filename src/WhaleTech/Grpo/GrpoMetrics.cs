// Step metrics computed the way TRL's GRPOTrainer logs them (huggingface/trl v1.9.0-26-gf2cd577,
// trl/trainer/grpo_trainer.py: _generate_and_score_completions, compute_loss, log):
//   reward_std            nanstd(rewards) over ALL completions of the step (one std of the flat batch,
//                         Bessel's correction as trl.trainer.utils.nanstd) — not a mean of group stds
//   reward_group_std/mean the mean over groups of each group's std (÷(G−1) with bessel, ÷G without): the
//                         quantity the advantages divide by; WhaleTech logged this as reward_std before these metrics followed TRL
//   clip_ratio/low_mean, high_mean, region_mean
//                         per compute_loss call (one micro-batch of one iteration): the token mean of the
//                         clipped masks over that micro-batch; log() then averages the calls' values
//   clip_ratio/low_min    per call: the smallest per-sequence mean of the low-clipped mask (nanmin: sequences
//                         without tokens ignored); averaged over the calls like every other metric
//   clip_ratio/high_max   per call: the largest per-sequence mean of the high-clipped mask (nanmax); averaged
// A call whose value is NaN (no valid sequence) is left out of the average, as TRL's log() filters NaN; a key
// with no valid value at all is not logged.
//
// Shapes: b sequences of one micro-batch, T completion tokens.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Grpo;

public static class GrpoMetrics
{
    /// <summary>Standard deviation of <paramref name="x"/>; ÷(n−1) with <paramref name="bessel"/>, else ÷n; 0 when undefined.</summary>
    public static double Std(IReadOnlyList<double> x, bool bessel)
    {
        double mean = x.Average();
        double ss = x.Sum(v => (v - mean) * (v - mean));
        int d = bessel ? x.Count - 1 : x.Count;
        return d > 0 ? Math.Sqrt(ss / d) : 0;
    }

    /// <summary>TRL's reward_std: the Bessel-corrected std of every reward of the step, groups flattened.</summary>
    public static double RewardStd(IEnumerable<double[]> groups) => Std(groups.SelectMany(g => g).ToArray(), bessel: true);

    /// <summary>reward_group_std/mean: the mean over groups of the group's std (the advantages' divisor).</summary>
    public static double GroupStdMean(IEnumerable<double[]> groups, bool bessel) => groups.Average(g => Std(g, bessel));
}

/// <summary>clip_ratio/* of one step: one <see cref="Add"/> per micro-batch and iteration (a TRL compute_loss call),
/// then <see cref="WriteTo"/> averages the calls as TRL's log() does.</summary>
public sealed class ClipRatioLog
{
    readonly List<double> _low = [], _high = [], _region = [], _lowMin = [], _highMax = [];

    public int Calls => _low.Count;

    /// <summary>One micro-batch: low- and high-clipped masks [b, T] (bool or 0/1) and the completion mask [b, T].</summary>
    public void Add(Tensor lowClipped, Tensor highClipped, Tensor mask)
    {
        using var scope = torch.NewDisposeScope();
        var m = mask.to_type(ScalarType.Float32);
        var lo = lowClipped.to_type(ScalarType.Float32) * m;                                 // [b, T]
        var hi = highClipped.to_type(ScalarType.Float32) * m;
        double tokens = Math.Max(1, (double)m.sum().item<float>());
        double lowSum = lo.sum().item<float>(), highSum = hi.sum().item<float>();
        _low.Add(lowSum / tokens);
        _high.Add(highSum / tokens);
        _region.Add((lowSum + highSum) / tokens);                                           // low and high are disjoint (Â < 0 vs Â > 0)
        var seqTokens = m.sum(1);                                                            // [b]
        var valid = seqTokens.gt(0);
        if (valid.any().item<bool>())
        {
            var n = seqTokens.masked_select(valid);
            _lowMin.Add((lo.sum(1).masked_select(valid) / n).min().item<float>());
            _highMax.Add((hi.sum(1).masked_select(valid) / n).max().item<float>());
        }
        else { _lowMin.Add(double.NaN); _highMax.Add(double.NaN); }
    }

    /// <summary>Writes the five clip_ratio keys (each the NaN-free mean over the calls).</summary>
    public void WriteTo(IDictionary<string, double> metrics)
    {
        Put(metrics, "clip_ratio/low_mean", _low);
        Put(metrics, "clip_ratio/high_mean", _high);
        Put(metrics, "clip_ratio/region_mean", _region);
        Put(metrics, "clip_ratio/low_min", _lowMin);
        Put(metrics, "clip_ratio/high_max", _highMax);
    }

    static void Put(IDictionary<string, double> metrics, string key, List<double> values)
    {
        var ok = values.Where(v => !double.IsNaN(v)).ToList();
        if (ok.Count == 0) return;
        double sum = 0;
        foreach (var v in ok) sum += v;                                                      // Python's sum(valid) / len(valid)
        metrics[key] = sum / ok.Count;
    }
}
