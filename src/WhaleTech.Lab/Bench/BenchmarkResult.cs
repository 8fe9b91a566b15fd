// The result of one benchmark suite run, as it is stored in benchmarks/results/<machine>/<suite>.json.
//
//   BenchmarkResult  suite name, description, machine, timestamp, suite parameters, the reproducing command,
//                    which metric to plot against which parameter, and the rows;
//   BenchmarkRow     one measured configuration: a variant (the plot's series, e.g. "bf16" or "kv-cache"),
//                    its parameters (the plot's x axis, e.g. n = 1024) and its metrics;
//   Metric           a named number with a unit ("tflops" 12.3 "TFLOP/s").
//
// Parameters are kept as invariant-culture strings; numbers are written to JSON as JSON numbers.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using WhaleTech.Runtime;

namespace WhaleTech.Lab.Bench;

public sealed record Metric(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("value")] double Value,
    [property: JsonPropertyName("unit")] string Unit);

/// <summary>Which metric the PNG plots against which row parameter (one series per variant).</summary>
public sealed record PlotSpec(
    [property: JsonPropertyName("metric")] string Metric,
    [property: JsonPropertyName("x")] string XParameter,
    [property: JsonPropertyName("log_x")] bool LogX = false,
    [property: JsonPropertyName("log_y")] bool LogY = false);

public sealed class BenchmarkRow
{
    [JsonPropertyName("variant")] public string Variant { get; init; } = "";
    [JsonPropertyName("parameters")] public Dictionary<string, string> Parameters { get; init; } = new();
    [JsonPropertyName("metrics")] public List<Metric> Metrics { get; init; } = new();

    public BenchmarkRow() { }
    public BenchmarkRow(string variant) => Variant = variant;

    /// <summary>Sets a parameter (numbers are stored in invariant culture); returns this row for chaining.</summary>
    public BenchmarkRow With(string name, object value)
    {
        Parameters[name] = BenchmarkResult.FormatValue(value);
        return this;
    }

    /// <summary>Adds a metric; returns this row for chaining.</summary>
    public BenchmarkRow Add(string name, double value, string unit)
    {
        if (Metrics.Any(m => m.Name == name))
            throw new WhaleArgumentException("metric", name, "each metric name appears once per row");
        Metrics.Add(new Metric(name, value, unit));
        return this;
    }

    /// <summary>Adds median_ms, p10_ms, p90_ms and min_ms of a <see cref="Timing"/>.</summary>
    public BenchmarkRow AddTiming(Timing t)
        => Add("median_ms", t.MedianMs, "ms").Add("p10_ms", t.P10Ms, "ms").Add("p90_ms", t.P90Ms, "ms").Add("min_ms", t.MinMs, "ms");

    public double? Metric(string name) => Metrics.FirstOrDefault(m => m.Name == name)?.Value;
}

public sealed class BenchmarkResult
{
    [JsonPropertyName("suite")] public string Suite { get; init; } = "";
    [JsonPropertyName("description")] public string Description { get; init; } = "";
    [JsonPropertyName("machine")] public MachineInfo? Machine { get; init; }
    [JsonPropertyName("timestamp")] public DateTimeOffset Timestamp { get; init; } = DateTimeOffset.UtcNow;
    /// <summary>The command line that reproduces this result.</summary>
    [JsonPropertyName("command")] public string Command { get; set; } = "";
    /// <summary>Suite-wide settings: device, quick, warm-up, repetitions, seeds …</summary>
    [JsonPropertyName("parameters")] public Dictionary<string, string> Parameters { get; init; } = new();
    [JsonPropertyName("plot")] public PlotSpec? Plot { get; set; }
    [JsonPropertyName("rows")] public List<BenchmarkRow> Rows { get; init; } = new();

    public BenchmarkResult() { }

    public BenchmarkResult(string suite, string description, MachineInfo machine)
    {
        if (suite.Length == 0 || !suite.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
            throw new WhaleArgumentException(nameof(suite), suite, "must be a non-empty name of letters, digits, '-' or '_' (it names the result files)");
        Suite = suite;
        Description = description;
        Machine = machine;
    }

    /// <summary>Adds and returns a new row for <paramref name="variant"/>.</summary>
    public BenchmarkRow AddRow(string variant)
    {
        var row = new BenchmarkRow(variant);
        Rows.Add(row);
        return row;
    }

    public BenchmarkResult With(string parameter, object value)
    {
        Parameters[parameter] = FormatValue(value);
        return this;
    }

    /// <summary>Invariant-culture text of a parameter value; booleans as JSON's true/false.</summary>
    public static string FormatValue(object value) => value switch
    {
        bool b => b ? "true" : "false",
        _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "",
    };

    internal static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new ParameterMapConverter() },
    };

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    public static BenchmarkResult FromJson(string json, string source = "<json>")
    {
        try
        {
            return JsonSerializer.Deserialize<BenchmarkResult>(json, JsonOptions)
                   ?? throw new WhaleFormatException(source, "is empty (expected a benchmark result object)");
        }
        catch (JsonException e)
        {
            throw new WhaleFormatException(source, "is not a benchmark result: " + e.Message, e);
        }
    }

    public static BenchmarkResult Load(string path)
        => FromJson(File.ReadAllText(Guard.ExistingFile(nameof(path), path)), path);
}

/// <summary>Writes parameter values that parse as numbers as JSON numbers (and reads both back as strings).</summary>
sealed class ParameterMapConverter : JsonConverter<Dictionary<string, string>>
{
    public override Dictionary<string, string> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.StartObject) throw new JsonException("parameters must be an object");
        var map = new Dictionary<string, string>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
        {
            var key = reader.GetString()!;
            reader.Read();
            map[key] = reader.TokenType switch
            {
                JsonTokenType.String => reader.GetString()!,
                JsonTokenType.Number => Encoding.GetString(reader.ValueSpan),
                JsonTokenType.True => "true",
                JsonTokenType.False => "false",
                _ => throw new JsonException($"parameter '{key}' must be a string, number or boolean"),
            };
        }
        return map;
    }

    static readonly System.Text.UTF8Encoding Encoding = new(false);

    public override void Write(Utf8JsonWriter writer, Dictionary<string, string> value, JsonSerializerOptions options)
    {
        writer.WriteStartObject();
        foreach (var (k, v) in value)
        {
            if (double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d)
                && v == Convert.ToString(d, CultureInfo.InvariantCulture))
                writer.WriteNumber(k, d);
            else if (v is "true" or "false")
                writer.WriteBoolean(k, v == "true");
            else
                writer.WriteString(k, v);
        }
        writer.WriteEndObject();
    }
}
