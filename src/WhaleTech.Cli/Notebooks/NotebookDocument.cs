// A Jupyter notebook file (nbformat 4, https://nbformat.readthedocs.io/en/latest/format_description.html)
// read as a JSON tree, so fields we do not know survive a run unchanged. The runner only reads cell
// sources and writes `outputs`, `execution_count`, cell ids and the C# kernelspec.
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using WhaleTech.IO;
using WhaleTech.Runtime;

namespace WhaleTech.Cli.Notebooks;

public sealed class NotebookDocument
{
    public string Path { get; }
    readonly JsonObject _root;
    readonly JsonArray _cells;

    NotebookDocument(string path, JsonObject root, JsonArray cells) { Path = path; _root = root; _cells = cells; }

    public int CellCount => _cells.Count;

    /// <summary>Reads and checks an nbformat 4 notebook; a bad file is a <see cref="WhaleFormatException"/>.</summary>
    public static NotebookDocument Load(string path)
    {
        Guard.ExistingFile("notebook", path);
        JsonNode? node;
        try { node = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new WhaleFormatException(path, "is not valid JSON: " + e.Message, e); }
        if (node is not JsonObject root) throw new WhaleFormatException(path, "must hold a JSON object (a Jupyter notebook)");
        if (root["nbformat"]?.GetValueKind() != JsonValueKind.Number || root["nbformat"]!.GetValue<int>() != 4)
            throw new WhaleFormatException(path, $"nbformat = {root["nbformat"]?.ToJsonString() ?? "missing"} is not supported: only nbformat 4");
        if (root["cells"] is not JsonArray cells) throw new WhaleFormatException(path, "has no 'cells' array");
        for (int i = 0; i < cells.Count; i++)
        {
            if (cells[i] is not JsonObject c || c["cell_type"]?.GetValueKind() != JsonValueKind.String)
                throw new WhaleFormatException(path, $"cell {i + 1} has no 'cell_type'");
            _ = SourceOf(c, path, i);
        }
        return new NotebookDocument(path, root, cells);
    }

    public string CellType(int index) => _cells[index]!["cell_type"]!.GetValue<string>();

    /// <summary>The cell's source as one string (nbformat allows a string or a list of lines).</summary>
    public string Source(int index) => SourceOf((JsonObject)_cells[index]!, Path, index);

    static string SourceOf(JsonObject cell, string path, int index) => cell["source"] switch
    {
        null => "",
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        JsonArray a => string.Concat(a.Select(x => x?.GetValueKind() == JsonValueKind.String ? x.GetValue<string>()
            : throw new WhaleFormatException(path, $"cell {index + 1}: 'source' lines must be strings"))),
        _ => throw new WhaleFormatException(path, $"cell {index + 1}: 'source' must be a string or a list of strings"),
    };

    /// <summary>Replaces a code cell's outputs and execution count (null = not run).</summary>
    public void SetOutputs(int index, int? executionCount, IEnumerable<JsonObject> outputs)
    {
        var cell = (JsonObject)_cells[index]!;
        cell["execution_count"] = executionCount;
        cell["outputs"] = new JsonArray(outputs.Cast<JsonNode?>().ToArray());
    }

    /// <summary>Writes the notebook atomically: C# kernelspec, cell ids (nbformat 4.5), one-space indent like Jupyter.</summary>
    public void Save(string path)
    {
        var metadata = _root["metadata"] as JsonObject ?? new JsonObject();
        _root["metadata"] = metadata;
        metadata["kernelspec"] = new JsonObject { ["display_name"] = ".NET (C#)", ["language"] = "C#", ["name"] = ".net-csharp" };
        metadata["language_info"] = new JsonObject
        {
            ["file_extension"] = ".cs", ["mimetype"] = "text/x-csharp", ["name"] = "C#", ["pygments_lexer"] = "csharp", ["version"] = "13.0",
        };
        _root["nbformat_minor"] = Math.Max(5, _root["nbformat_minor"]?.GetValueKind() == JsonValueKind.Number ? _root["nbformat_minor"]!.GetValue<int>() : 0);
        var ids = new HashSet<string>();
        for (int i = 0; i < _cells.Count; i++)
        {
            var cell = (JsonObject)_cells[i]!;
            string? id = cell["id"]?.GetValueKind() == JsonValueKind.String ? cell["id"]!.GetValue<string>() : null;
            if (id is null || !ids.Add(id)) { id = $"cell-{i + 1}-{Guid.NewGuid().ToString("N")[..6]}"; ids.Add(id); cell["id"] = id; }
            cell["metadata"] ??= new JsonObject();
            if (CellType(i) == "code")
            {
                cell["outputs"] ??= new JsonArray();
                if (!cell.ContainsKey("execution_count")) cell["execution_count"] = null;
                ((JsonObject)cell["metadata"]!)["polyglot_notebook"] ??= new JsonObject { ["kernelName"] = "csharp" };
            }
        }
        var json = _root.ToJsonString(new JsonSerializerOptions
        {
            WriteIndented = true, IndentSize = 1, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        });
        AtomicFile.WriteAllText(path, json + "\n");
    }

    // ---- nbformat output objects ----

    /// <summary>Text as a list of lines, each keeping its "\n" (Jupyter's multiline-string form).</summary>
    public static JsonArray Lines(string text)
    {
        var lines = new JsonArray();
        int start = 0;
        for (int i = 0; i < text.Length; i++)
            if (text[i] == '\n') { lines.Add(text[start..(i + 1)]); start = i + 1; }
        if (start < text.Length) lines.Add(text[start..]);
        return lines;
    }

    public static JsonObject Stream(string name, string text)
        => new() { ["name"] = name, ["output_type"] = "stream", ["text"] = Lines(text) };

    public static JsonObject DisplayData(string mime, string data, string plain)
        => new()
        {
            ["data"] = new JsonObject { [mime] = mime.StartsWith("image/", StringComparison.Ordinal) ? data : Lines(data), ["text/plain"] = Lines(plain) },
            ["metadata"] = new JsonObject(),
            ["output_type"] = "display_data",
        };

    public static JsonObject ExecuteResult(int executionCount, string plain)
        => new()
        {
            ["data"] = new JsonObject { ["text/plain"] = Lines(plain) },
            ["execution_count"] = executionCount,
            ["metadata"] = new JsonObject(),
            ["output_type"] = "execute_result",
        };

    public static JsonObject Error(string name, string value, IEnumerable<string> traceback)
        => new()
        {
            ["ename"] = name,
            ["evalue"] = value,
            ["output_type"] = "error",
            ["traceback"] = new JsonArray(traceback.Select(t => (JsonNode?)JsonValue.Create(t)).ToArray()),
        };
}
