// What one option (or argument) of a `whale` command allows: its kind, range or choices. The same rule checks
// the value before any work starts (Preflight), writes the "Allowed: …" text of --help, and tells the robustness
// suite which boundary values must be accepted (exit 0) and which rejected (exit 2).
using System.Globalization;
using WhaleTech.Runtime;

namespace WhaleTech.Cli.Validation;

public enum ValueKind
{
    /// <summary>An integer in [Min, Max] (int, long, int?, long[], or a comma-separated list when List).</summary>
    Integer,
    /// <summary>A finite number in [Min, Max] ((Min, Max] when MinExclusive).</summary>
    Real,
    /// <summary>One of Choices (case-insensitive); a comma-separated subset when List.</summary>
    Choice,
    /// <summary>A switch: --x, --x true, --x false.</summary>
    Flag,
    /// <summary>Free text; checked by Check.</summary>
    Text,
    /// <summary>auto, cpu, cuda or cuda:N.</summary>
    Device,
    /// <summary>A memory size: 512MiB, 8GiB, 1.5GB.</summary>
    Memory,
    /// <summary>An output folder: created and proven writable at start.</summary>
    OutDir,
    /// <summary>An output file: not a folder; its folder created and proven writable.</summary>
    OutFile,
    /// <summary>An output file name without extension (name.json, name.md, … are written).</summary>
    OutPrefix,
    /// <summary>An existing, readable file.</summary>
    InFile,
    /// <summary>An existing folder.</summary>
    InDir,
}

public sealed record OptionRule(ValueKind Kind)
{
    public double Min { get; init; } = double.NegativeInfinity;
    public double Max { get; init; } = double.PositiveInfinity;
    public bool MinExclusive { get; init; }
    public string[] Choices { get; init; } = [];
    /// <summary>Comma-separated list (string options) or repeated values (array options).</summary>
    public bool List { get; init; }
    /// <summary>Said after the allowed range, e.g. "0 = off".</summary>
    public string? Note { get; init; }
    /// <summary>Description for an option declared without one.</summary>
    public string? Describe { get; init; }
    /// <summary>An extra check of the (non-null) value, throwing WhaleArgumentException(name, …).</summary>
    public Action<string, object>? Check { get; init; }
    /// <summary>Allowed-text override (Text options).</summary>
    public string? AllowedText { get; init; }

    public static OptionRule Int(double min, double max, string? note = null) => new(ValueKind.Integer) { Min = min, Max = max, Note = note };
    public static OptionRule Ints(double min, double max, string? note = null) => new(ValueKind.Integer) { Min = min, Max = max, Note = note, List = true };
    public static OptionRule Real(double min, double max, bool minExclusive = false, string? note = null) => new(ValueKind.Real) { Min = min, Max = max, MinExclusive = minExclusive, Note = note };
    public static OptionRule Reals(double min, double max, bool minExclusive = false) => new(ValueKind.Real) { Min = min, Max = max, MinExclusive = minExclusive, List = true };
    public static OptionRule OneOf(params string[] choices) => new(ValueKind.Choice) { Choices = choices };
    public static OptionRule SubsetOf(params string[] choices) => new(ValueKind.Choice) { Choices = choices, List = true };
    public static readonly OptionRule Flag = new(ValueKind.Flag);
    public static readonly OptionRule Device = new(ValueKind.Device);
    public static readonly OptionRule OutDir = new(ValueKind.OutDir);
    public static readonly OptionRule OutFile = new(ValueKind.OutFile);
    public static readonly OptionRule OutPrefix = new(ValueKind.OutPrefix);
    public static readonly OptionRule InFile = new(ValueKind.InFile);
    public static readonly OptionRule InDir = new(ValueKind.InDir);
    public static OptionRule Text(string allowed, Action<string, object> check) => new(ValueKind.Text) { AllowedText = allowed, Check = check };

    static string N(double v) => v switch
    {
        double.PositiveInfinity => "∞",
        double.NegativeInfinity => "−∞",
        _ when Math.Abs(v) >= 1e6 && v == Math.Floor(v) && Math.Log10(Math.Abs(v)) % 1 == 0 => "1e" + Math.Log10(Math.Abs(v)).ToString(CultureInfo.InvariantCulture),
        _ => v.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>What is allowed, as --help and the error messages say it.</summary>
    public string Allowed
    {
        get
        {
            string text = Kind switch
            {
                ValueKind.Integer => (List ? "comma-separated integers, each in " : "an integer in ") + $"[{N(Min)}, {N(Max)}]",
                ValueKind.Real => (List ? "comma-separated finite numbers, each in " : "a finite number in ") + $"{(MinExclusive ? "(" : "[")}{N(Min)}, {N(Max)}]",
                ValueKind.Choice => (List ? "a comma-separated subset of " : "one of ") + string.Join(", ", Choices),
                ValueKind.Flag => "true or false",
                ValueKind.Device => "auto, cpu, cuda or cuda:N",
                ValueKind.Memory => "a size such as 512MiB, 8GiB or 1.5GB",
                ValueKind.OutDir => "a folder that can be created and written",
                ValueKind.OutFile => "a file path (not a folder) in a writable folder",
                ValueKind.OutPrefix => "a file name without extension, in a writable folder",
                ValueKind.InFile => "an existing, readable file",
                ValueKind.InDir => "an existing folder",
                _ => AllowedText ?? "text",
            };
            return Note is null ? text : $"{text} ({Note})";
        }
    }

    // ---- checking ---------------------------------------------------------------------------------

    /// <summary>Checks <paramref name="value"/> of option <paramref name="name"/>; throws WhaleArgumentException.</summary>
    public void Validate(string name, object? value)
    {
        if (value is null) return;
        switch (Kind)
        {
            case ValueKind.Integer:
                foreach (var item in Items(name, value))
                {
                    long v = item switch
                    {
                        int i => i, long l => l,
                        string s => long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var p) ? p : throw Bad(name, value),
                        _ => throw Bad(name, value),
                    };
                    if (v < Min || v > Max) throw Bad(name, List ? value : v);
                }
                break;
            case ValueKind.Real:
                foreach (var item in Items(name, value))
                {
                    double v = item switch
                    {
                        double d => d, float f => f, int i => i, long l => l,
                        string s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var p) ? p : throw Bad(name, value),
                        _ => throw Bad(name, value),
                    };
                    if (!double.IsFinite(v) || v > Max || v < Min || (MinExclusive && v <= Min)) throw Bad(name, List ? value : v);
                }
                break;
            case ValueKind.Choice:
                foreach (var item in Items(name, value))
                    if (item is not string s || !Choices.Contains(s.Trim().ToLowerInvariant())) throw Bad(name, value);
                break;
            case ValueKind.Device:
                if (value is not string dev || !IsDevice(dev)) throw Bad(name, value);
                break;
            case ValueKind.Memory:
                MemoryBudget.Parse(name, (string)value);
                break;
            case ValueKind.OutDir: Paths.WritableFolder(name, (string)value); break;
            case ValueKind.OutFile: Paths.WritableFile(name, (string)value); break;
            case ValueKind.OutPrefix:
                if (string.IsNullOrWhiteSpace((string)value) || Directory.Exists((string)value))
                    throw new WhaleArgumentException(name, value, "must be a file name without extension (name.json, name.md … are written), not a folder or empty");
                Paths.WritableFile(name, (string)value + ".json");
                break;
            case ValueKind.InFile: Paths.ReadableFile(name, (string)value); break;
            case ValueKind.InDir: Paths.ExistingFolder(name, (string)value); break;
        }
        Check?.Invoke(name, value);
    }

    WhaleArgumentException Bad(string name, object? value) => new(name, value, "must be " + Allowed);

    IEnumerable<object> Items(string name, object value)
    {
        switch (value)
        {
            case string s when List:
                var parts = s.Split(',');
                if (s.Trim().Length == 0 || parts.Any(p => p.Trim().Length == 0)) throw Bad(name, value);
                return parts.Select(p => (object)p.Trim());
            case System.Collections.IEnumerable e and not string:
                var items = e.Cast<object>().ToList();
                if (items.Count == 0) throw Bad(name, value);
                return items;
            default:
                return [value];
        }
    }

    static bool IsDevice(string s)
    {
        var d = s.Trim().ToLowerInvariant();
        if (d is "auto" or "cpu" or "cuda") return true;
        return d.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(d[5..], NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 0 and < 64;
    }
}

/// <summary>Path checks done at start: folders created and proven writable, inputs readable.</summary>
public static class Paths
{
    public static void WritableFolder(string name, string path)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new WhaleArgumentException(name, path, "must be a folder path (not empty)");
        if (File.Exists(path)) throw new WhaleArgumentException(name, path, "must be a folder, but it is an existing file");
        try
        {
            Directory.CreateDirectory(path);
            var probe = Path.Combine(path, $".whale-write-test-{Environment.ProcessId}");
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new WhaleArgumentException(name, path, $"must be a folder that can be created and written ({Reason(e)})");
        }
    }

    public static void WritableFile(string name, string path)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new WhaleArgumentException(name, path, "must be a file path (not empty)");
        if (Directory.Exists(path) || path.EndsWith('/') || path.EndsWith(Path.DirectorySeparatorChar))
            throw new WhaleArgumentException(name, path, "must be a file path, but it names a folder");
        string folder;
        try { folder = Path.GetDirectoryName(Path.GetFullPath(path)) ?? "."; }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException) { throw new WhaleArgumentException(name, path, $"must be a valid file path ({Reason(e)})"); }
        if (File.Exists(folder)) throw new WhaleArgumentException(name, path, $"must be in a folder, but {folder} is a file");
        WritableFolder(name, folder);
    }

    public static void ReadableFile(string name, string path)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new WhaleArgumentException(name, path, "must name an existing file (not empty)");
        if (Directory.Exists(path)) throw new WhaleArgumentException(name, path, "must name a file, but it is a folder");
        if (!File.Exists(path)) throw new WhaleArgumentException(name, path, "must name an existing file");
        try { using var _ = File.OpenRead(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new WhaleArgumentException(name, path, $"must be a readable file ({Reason(e)})"); }
    }

    public static void ExistingFolder(string name, string path)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new WhaleArgumentException(name, path, "must name an existing folder (not empty)");
        if (File.Exists(path)) throw new WhaleArgumentException(name, path, "must name a folder, but it is a file");
        if (!Directory.Exists(path)) throw new WhaleArgumentException(name, path, "must name an existing folder");
    }

    static string Reason(Exception e) => e switch
    {
        UnauthorizedAccessException => "permission denied",
        _ => e.GetType().Name,
    };
}
