// Exhaustive check of the emulated FP8 casts (Fp8Cast.Round) against libtorch's own float8 casts
// (Fp8Cast.Reference): every float32 bit pattern in [start, start + count), for E4M3 and E5M2, in the
// non-saturating and saturating modes. Results compare the float32 bit patterns exactly (NaN payload and
// sign included, −0 ≠ +0). `whale fp8 sweep` runs all 2^32 patterns and writes the JSON result.
//
// Shapes: one chunk is [C] float32 built from C consecutive bit patterns.
using System.Runtime.InteropServices;
using System.Text.Json.Serialization;
using TorchSharp;
using static TorchSharp.torch;

using WhaleTech.Fp8;

namespace WhaleTech.Lab.Fp8;

/// <summary>Mismatch count of one (format, overflow mode) pair, with the first few mismatching patterns.</summary>
public sealed class SweepCase
{
    [JsonPropertyName("format")] public required string Format { get; init; }
    [JsonPropertyName("overflow")] public required string Overflow { get; init; }
    [JsonPropertyName("checked")] public long Checked { get; set; }
    [JsonPropertyName("mismatches")] public long Mismatches { get; set; }
    /// <summary>Up to 16 mismatches as "input bits → emulated bits vs reference bits" (hex).</summary>
    [JsonPropertyName("examples")] public List<string> Examples { get; } = [];
}

public static class Fp8Sweep
{
    public const long AllPatterns = 1L << 32;

    /// <summary>All four (format, mode) cases, in a fixed order.</summary>
    public static IReadOnlyList<(Fp8Format Format, Fp8Overflow Overflow)> Cases { get; } =
    [
        (Fp8Format.E4M3, Fp8Overflow.NonSaturating), (Fp8Format.E4M3, Fp8Overflow.Saturating),
        (Fp8Format.E5M2, Fp8Overflow.NonSaturating), (Fp8Format.E5M2, Fp8Overflow.Saturating),
    ];

    /// <summary>Checks bit patterns [start, start+count) in chunks of <paramref name="chunk"/> on
    /// <paramref name="device"/>; <paramref name="progress"/> gets the number of patterns done so far.</summary>
    public static List<SweepCase> Run(long start, long count, Device device, int chunk = 1 << 22, Action<long>? progress = null)
    {
        Runtime.Guard.InRange("--start", start, 0, AllPatterns - 1);
        Runtime.Guard.InRange("--count", count, 1, AllPatterns - start);
        Runtime.Guard.InRange("--chunk", chunk, 1, 1 << 26);
        var results = Cases.Select(c => new SweepCase { Format = c.Format.Name, Overflow = c.Overflow.ToString() }).ToList();
        var bits = new uint[chunk];
        for (long done = 0; done < count; done += chunk)
        {
            using var scope = NewDisposeScope();
            int n = (int)Math.Min(chunk, count - done);
            uint first = (uint)(start + done);
            Parallel.For(0, n, i => bits[i] = first + (uint)i);
            var floats = MemoryMarshal.Cast<uint, float>(bits.AsSpan(0, n)).ToArray();   // exact bit copy, NaN payloads kept
            var x = torch.tensor(floats, device: device);                                   // [C]
            for (int c = 0; c < Cases.Count; c++)
            {
                var (format, overflow) = Cases[c];
                var emulated = Fp8Cast.Round(x, format, overflow).cpu().data<float>().ToArray();
                var reference = Fp8Cast.Reference(x, format, overflow).cpu().data<float>().ToArray();
                Compare(bits.AsSpan(0, n), emulated, reference, results[c]);
            }
            progress?.Invoke(done + n);
        }
        return results;
    }

    static void Compare(ReadOnlySpan<uint> input, float[] emulated, float[] reference, SweepCase result)
    {
        var e = MemoryMarshal.Cast<float, uint>(emulated);
        var r = MemoryMarshal.Cast<float, uint>(reference);
        for (int i = 0; i < input.Length; i++)
        {
            if (e[i] == r[i]) continue;
            result.Mismatches++;
            if (result.Examples.Count < 16) result.Examples.Add($"{input[i]:X8} -> emulated {e[i]:X8}, libtorch {r[i]:X8}");
        }
        result.Checked += input.Length;
    }
}
