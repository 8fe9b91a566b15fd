// Memory estimates checked before any work starts (the model-specific ones: Core/ModelMemory.cs): a model's
// parameters, its optimizer state, the activations of a training step, KV caches and benchmark tensors, against the memory this machine has
// available (/proc/meminfo MemAvailable) or a budget the user sets (`--max-memory`, WHALETECH_MAX_MEMORY).
// Every size is computed in double precision, so no derived size can overflow before it is compared; an
// estimate that does not fit is a WhaleArgumentException naming the parameters and the sizes.
//
// The estimates are deliberately generous upper bounds (a factor for libtorch's temporaries, a per-module
// overhead for TorchSharp's native objects), so that what passes runs, and what fails would have failed.
using System.Globalization;

namespace WhaleTech.Runtime;

/// <summary>The memory WhaleTech may use: <see cref="Override"/> when set, else MemAvailable.</summary>
public static class MemoryBudget
{
    public const string Variable = "WHALETECH_MAX_MEMORY";

    /// <summary>Set by the CLI's --max-memory; null = the machine's available memory.</summary>
    public static long? Override { get; set; }

    /// <summary>Where the budget comes from, for messages.</summary>
    public static string Source => Override is not null ? "--max-memory" :
        Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } ? Variable : "available memory (MemAvailable; --max-memory to change)";

    /// <summary>Bytes that may be allocated.</summary>
    public static long Bytes
    {
        get
        {
            if (Override is long o) return o;
            if (Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } env) return Parse(Variable, env);
            return Available();
        }
    }

    /// <summary>MemAvailable from /proc/meminfo; elsewhere what the GC reports as available.</summary>
    public static long Available()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                {
                    var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (parts.Length >= 2 && long.TryParse(parts[1], CultureInfo.InvariantCulture, out var kb)) return kb * 1024;
                }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }

    /// <summary>Parses 512MiB, 8GiB, 8G, 1.5GB, 1000000 (bytes).</summary>
    public static long Parse(string parameter, string text)
    {
        var s = text.Trim();
        double factor = 1;
        foreach (var (suffix, f) in new (string, double)[]
                 {
                     ("TiB", 1L << 40), ("GiB", 1L << 30), ("MiB", 1L << 20), ("KiB", 1L << 10),
                     ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("T", 1L << 40), ("G", 1L << 30), ("M", 1L << 20), ("K", 1L << 10), ("B", 1),
                 })
            if (s.EndsWith(suffix, StringComparison.OrdinalIgnoreCase)) { factor = f; s = s[..^suffix.Length].Trim(); break; }
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || !double.IsFinite(v) || v <= 0 || v * factor > 1e18 || v * factor < 1 << 20)
            throw new WhaleArgumentException(parameter, text, "must be a memory size between 1MiB and 1EB, e.g. 512MiB, 8GiB or 1.5GB");
        return (long)(v * factor);
    }

    public static string Format(double bytes) => bytes switch
    {
        >= 1L << 40 => (bytes / (1L << 40)).ToString("0.#", CultureInfo.InvariantCulture) + " TiB",
        >= 1L << 30 => (bytes / (1L << 30)).ToString("0.##", CultureInfo.InvariantCulture) + " GiB",
        >= 1L << 20 => (bytes / (1L << 20)).ToString("0.#", CultureInfo.InvariantCulture) + " MiB",
        _ => (bytes / 1024).ToString("0.#", CultureInfo.InvariantCulture) + " KiB",
    };
}

/// <summary>An itemized memory estimate in bytes (doubles: derived sizes cannot overflow).</summary>
public sealed class MemoryEstimate
{
    readonly List<(string Part, double Bytes)> _parts = [];
    public IReadOnlyList<(string Part, double Bytes)> Parts => _parts;
    public double Total => _parts.Sum(p => p.Bytes);

    public MemoryEstimate Add(string part, double bytes)
    {
        if (bytes > 0 || double.IsNaN(bytes)) _parts.Add((part, double.IsNaN(bytes) ? double.PositiveInfinity : bytes));
        return this;
    }

    public override string ToString() => $"{MemoryBudget.Format(Total)} (" + string.Join(" + ", _parts.Select(p => $"{p.Part} {MemoryBudget.Format(p.Bytes)}")) + ")";

    /// <summary>Throws a WhaleArgumentException naming <paramref name="parameters"/> unless the estimate fits the budget.</summary>
    public MemoryEstimate EnsureFits(string parameters, long? budget = null)
    {
        long limit = budget ?? MemoryBudget.Bytes;
        if (!(Total <= limit))
            throw new WhaleArgumentException(parameters, MemoryBudget.Format(Total) + " estimated",
                $"must fit in {MemoryBudget.Format(limit)} of {MemoryBudget.Source}: " + string.Join(" + ", _parts.Select(p => $"{p.Part} {MemoryBudget.Format(p.Bytes)}")));
        return this;
    }

    /// <summary>Tensors of the given element counts and element size (benchmarks, labs), with a factor for temporaries.</summary>
    public static MemoryEstimate ForTensors(string part, double elements, double bytesPerElement = 4, double temporaries = 1)
        => new MemoryEstimate().Add(part, elements * bytesPerElement * temporaries);
}

/// <summary>Limits on thread counts: at most what the machine has.</summary>
public static class ThreadLimits
{
    public static int Max => Environment.ProcessorCount;

    /// <summary>1 … ProcessorCount, or 0 when <paramref name="allowZero"/> (0 = keep the default).</summary>
    public static int Check(string parameter, long threads, bool allowZero = false)
    {
        if ((allowZero && threads == 0) || (threads >= 1 && threads <= Max)) return (int)threads;
        throw new WhaleArgumentException(parameter, threads, allowZero ? $"must be in [0, {Max}] (0 = WhaleTech's default; this machine has {Max} logical cores)"
                                                                   : $"must be in [1, {Max}] (this machine has {Max} logical cores)");
    }
}
