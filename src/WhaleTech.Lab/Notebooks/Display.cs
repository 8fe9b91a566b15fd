// Rich output from notebook cells, samples and the tour: a PNG (file, bytes or a ScottPlot plot), Markdown
// text or a table. In a notebook (the .NET Interactive kernel; notebooks/setup.csx sets DefaultSink) each call
// becomes a Jupyter `display_data` output of the running cell (image/png as base64, text/markdown); anywhere
// else it prints a plain-text stand-in, so the same code runs as a sample program too.
using ScottPlot;
using WhaleTech.Lab.Bench;
using WhaleTech.Runtime;

namespace WhaleTech.Lab.Notebooks;

/// <summary>One rich output: <see cref="MimeType"/> is "image/png" (Data = base64) or "text/markdown" (Data = text).</summary>
public sealed record DisplayItem(string MimeType, string Data, string PlainText);

public static class Display
{
    static readonly AsyncLocal<Action<DisplayItem>?> Sink = new();

    /// <summary>Where Display calls go when no <see cref="Capture"/> is active; null (the default) prints the plain-text
    /// stand-in. notebooks/setup.csx points it at the notebook kernel.</summary>
    public static Action<DisplayItem>? DefaultSink { get; set; }

    /// <summary>Routes Display calls made on this async flow to <paramref name="sink"/> until disposed (tests use it).</summary>
    public static IDisposable Capture(Action<DisplayItem> sink)
    {
        ArgumentNullException.ThrowIfNull(sink);
        var previous = Sink.Value;
        Sink.Value = sink;
        return new Restore(() => Sink.Value = previous);
    }

    /// <summary>Shows Markdown text (headings, lists, tables, $math$).</summary>
    public static void Markdown(string markdown)
    {
        ArgumentNullException.ThrowIfNull(markdown);
        Emit(new DisplayItem("text/markdown", markdown, markdown));
    }

    /// <summary>Shows a Markdown table: one header cell per column, one row per item.</summary>
    public static void Table(IReadOnlyList<string> header, IEnumerable<IReadOnlyList<object?>> rows)
    {
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(rows);
        if (header.Count == 0) throw new WhaleArgumentException(nameof(header), header, "needs at least one column");
        var lines = new List<string>
        {
            "| " + string.Join(" | ", header.Select(Cell)) + " |",
            "|" + string.Concat(Enumerable.Repeat("---|", header.Count)),
        };
        int r = 0;
        foreach (var row in rows)
        {
            if (row.Count != header.Count)
                throw new WhaleArgumentException($"rows[{r}]", row.Count, $"must have {header.Count} cells, one per header column");
            lines.Add("| " + string.Join(" | ", row.Select(Cell)) + " |");
            r++;
        }
        Markdown(string.Join("\n", lines) + "\n");
    }

    /// <summary>Shows a benchmark result's table (variant, parameters, metrics with units).</summary>
    public static void Table(BenchmarkResult result) => Markdown(ResultWriter.ToMarkdownTable(result));

    /// <summary>Shows a PNG file.</summary>
    public static void Image(string pngPath)
    {
        Guard.ExistingFile(nameof(pngPath), pngPath);
        Png(File.ReadAllBytes(pngPath), Path.GetFileName(pngPath));
    }

    /// <summary>Shows PNG bytes (checked for the PNG signature).</summary>
    public static void Png(byte[] png, string? caption = null)
    {
        ArgumentNullException.ThrowIfNull(png);
        if (png.Length < 8 || png[0] != 0x89 || png[1] != (byte)'P' || png[2] != (byte)'N' || png[3] != (byte)'G')
            throw new WhaleArgumentException(nameof(png), $"{png.Length} bytes", "must be a PNG image (starts with \\x89PNG)");
        Emit(new DisplayItem("image/png", Convert.ToBase64String(png), $"<PNG image{(caption is null ? "" : ": " + caption)}, {png.Length} bytes>"));
    }

    /// <summary>Renders a ScottPlot plot to PNG and shows it.</summary>
    public static void Plot(Plot plot, int width = 640, int height = 400)
    {
        ArgumentNullException.ThrowIfNull(plot);
        Guard.Positive(nameof(width), width);
        Guard.Positive(nameof(height), height);
        Png(plot.GetImageBytes(width, height, ImageFormat.Png), "plot");
    }

    static string Cell(object? value) => value switch
    {
        null => "",
        double d => ResultWriter.FormatNumber(d),
        float f => ResultWriter.FormatNumber(f),
        _ => (Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? "").Replace("|", "\\|").Replace("\n", " "),
    };

    static void Emit(DisplayItem item)
    {
        if ((Sink.Value ?? DefaultSink) is { } sink) sink(item);
        else Console.WriteLine(item.PlainText);
    }

    sealed class Restore(Action undo) : IDisposable
    {
        Action? _undo = undo;
        public void Dispose() { _undo?.Invoke(); _undo = null; }
    }
}
