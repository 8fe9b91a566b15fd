// WhaleTech's exceptions: every user mistake becomes one of these, with a message that names the
// parameter, the value and what is allowed. The CLI turns them into exit code 2 without a stack trace.
namespace WhaleTech.Runtime;

/// <summary>Base class of every error WhaleTech raises on purpose.</summary>
public class WhaleException : Exception
{
    public WhaleException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>A parameter, option or config field has a value that is not allowed.</summary>
public sealed class WhaleArgumentException : WhaleException
{
    public string Parameter { get; }
    public string Value { get; }
    public string Allowed { get; }

    public WhaleArgumentException(string parameter, object? value, string allowed)
        : base($"{parameter} = {Format(value)} is not allowed: {allowed}.")
    {
        Parameter = parameter;
        Value = Format(value);
        Allowed = allowed;
    }

    static string Format(object? v) => v switch
    {
        null => "null",
        string s => $"'{s}'",
        System.Collections.IEnumerable e => "[" + string.Join(", ", e.Cast<object?>().Select(x => x?.ToString() ?? "null")) + "]",
        _ => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? "?",
    };
}

/// <summary>A file is missing, truncated, corrupt or in a format WhaleTech does not read.</summary>
public sealed class WhaleFormatException : WhaleException
{
    public string Path { get; }
    public WhaleFormatException(string path, string problem, Exception? inner = null)
        : base($"{path}: {problem}", inner) => Path = path;
}

/// <summary>Guards used by constructors and options; each throws <see cref="WhaleArgumentException"/>.</summary>
public static class Guard
{
    public static long Positive(string parameter, long value)
        => value > 0 ? value : throw new WhaleArgumentException(parameter, value, "must be a positive integer");

    public static int Positive(string parameter, int value)
        => value > 0 ? value : throw new WhaleArgumentException(parameter, value, "must be a positive integer");

    public static double Positive(string parameter, double value)
        => value > 0 && double.IsFinite(value) ? value : throw new WhaleArgumentException(parameter, value, "must be a finite number > 0");

    public static long NonNegative(string parameter, long value)
        => value >= 0 ? value : throw new WhaleArgumentException(parameter, value, "must be ≥ 0");

    public static double NonNegative(string parameter, double value)
        => value >= 0 && double.IsFinite(value) ? value : throw new WhaleArgumentException(parameter, value, "must be a finite number ≥ 0");

    public static double InRange(string parameter, double value, double min, double max)
        => value >= min && value <= max ? value : throw new WhaleArgumentException(parameter, value, $"must be in [{min}, {max}]");

    public static long InRange(string parameter, long value, long min, long max)
        => value >= min && value <= max ? value : throw new WhaleArgumentException(parameter, value, $"must be in [{min}, {max}]");

    public static string OneOf(string parameter, string value, params string[] allowed)
        => allowed.Contains(value) ? value : throw new WhaleArgumentException(parameter, value, "must be one of " + string.Join(", ", allowed));

    public static void Divides(string parameter, long value, string otherName, long other)
    {
        if (value <= 0 || other % value != 0)
            throw new WhaleArgumentException(parameter, value, $"must be a positive divisor of {otherName} = {other}");
    }

    public static string ExistingFile(string parameter, string path)
        => File.Exists(path) ? path : throw new WhaleArgumentException(parameter, path, "must name an existing file");
}
