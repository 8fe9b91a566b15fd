// Counter-based random streams: every random number GRPO uses is a pure function of (seed, step, prompt
// slot, sample, token, vocab entry), mixed with SplitMix64 (Steele et al. 2014). So sample i of prompt p
// at step s draws the same tokens whether it is generated alone or in a batch of 512, on one thread or
// many, in an uninterrupted run or after a resume — which is what makes runs reproducible and resumable.
namespace WhaleTech.Grpo;

public static class Streams
{
    /// <summary>SplitMix64 finalizer applied to a ^ (b · golden ratio) — a well-mixed 64-bit hash of two words.</summary>
    public static ulong Mix(ulong a, ulong b)
    {
        ulong z = a ^ (b + 0x9E3779B97F4A7C15UL + (a << 6) + (a >> 2));
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The stream key of one sample: (seed, step, prompt slot, sample index).</summary>
    public static ulong SampleKey(long seed, long step, long slot, long sample)
        => Mix(Mix(Mix(Mix(0x5EED, (ulong)seed), (ulong)step), (ulong)slot), (ulong)sample);

    /// <summary>A uniform number in the open interval (0, 1) for (key, token index, vocab entry).</summary>
    public static double Uniform(ulong key, long token, long entry)
        => ((Mix(Mix(key, (ulong)token), (ulong)entry) >> 11) + 0.5) * (1.0 / (1UL << 53));
}
