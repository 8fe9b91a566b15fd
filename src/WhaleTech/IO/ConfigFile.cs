// Strict reading of a config.json file, before any field is used: the path must be a readable file (not a
// folder), the JSON must not repeat a key at any level (System.Text.Json would keep the last one silently or
// throw an ArgumentException from deep inside), the fields every model needs must be present (a config.json
// without hidden_size must not run on WhaleTech's defaults), and model_type must be one WhaleTech reads.
using System.Text;
using System.Text.Json;
using WhaleTech.Runtime;

namespace WhaleTech.IO;

public static class ConfigFile
{
    /// <summary>Fields a config.json file must set (WhaleTech's defaults would silently stand in for them).</summary>
    public static readonly string[] RequiredFields = ["hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"];

    /// <summary>model_type values WhaleTech reads (and the ones it writes).</summary>
    public static readonly string[] ModelTypes = ["deepseek_v3", "deepseek_v2"];

    /// <summary>Largest config.json read (a real one is a few KiB).</summary>
    public const long MaxBytes = 16 << 20;

    /// <summary>Reads the text of a config.json path with clear errors for a folder, a missing, huge or unreadable file.</summary>
    public static string ReadText(string parameter, string path)
    {
        if (Directory.Exists(path)) throw new WhaleArgumentException(parameter, path, "must name a config.json file, not a folder");
        if (!File.Exists(path)) throw new WhaleArgumentException(parameter, path, "must name an existing config.json");
        try
        {
            var info = new FileInfo(path);
            if (info.Length > MaxBytes) throw new WhaleFormatException(path, $"{info.Length:N0} bytes is not a config.json (at most {MaxBytes:N0} bytes)");
            return File.ReadAllText(path);
        }
        catch (UnauthorizedAccessException e) { throw new WhaleFormatException(path, "cannot be read (permission denied)", e); }
        catch (IOException e) { throw new WhaleFormatException(path, $"cannot be read ({e.GetType().Name})", e); }
    }

    /// <summary>Throws a WhaleFormatException naming the first key an object repeats (with its JSON path).</summary>
    public static void RejectDuplicateKeys(string json, string source)
    {
        var reader = new Utf8JsonReader(Encoding.UTF8.GetBytes(json), new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        var stack = new Stack<(HashSet<string>? Keys, string Path)>();
        string? pendingName = null;
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject:
                        stack.Push((new HashSet<string>(StringComparer.Ordinal), Child(stack, pendingName)));
                        pendingName = null;
                        break;
                    case JsonTokenType.StartArray:
                        stack.Push((null, Child(stack, pendingName)));
                        pendingName = null;
                        break;
                    case JsonTokenType.EndObject:
                    case JsonTokenType.EndArray:
                        stack.Pop();
                        break;
                    case JsonTokenType.PropertyName:
                        var name = reader.GetString()!;
                        var (keys, path) = stack.Peek();
                        if (keys is not null && !keys.Add(name))
                            throw new WhaleFormatException(source, $"key '{(path.Length == 0 ? name : path + "." + name)}' appears more than once (each key may appear once)");
                        pendingName = name;
                        break;
                    default:
                        pendingName = null;
                        break;
                }
            }
        }
        catch (JsonException e) { throw new WhaleFormatException(source, $"not valid JSON ({e.Message})", e); }
        catch (InvalidOperationException e) { throw new WhaleFormatException(source, $"not valid JSON ({e.Message})", e); }
    }

    static string Child(Stack<(HashSet<string>? Keys, string Path)> stack, string? name)
    {
        if (stack.Count == 0) return "";
        var parent = stack.Peek().Path;
        var part = name ?? "[]";
        return parent.Length == 0 ? part : parent + "." + part;
    }

    /// <summary>The checks of a config.json file: required fields present and not null, model_type supported.</summary>
    public static void CheckFields(JsonElement root, string source)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new WhaleFormatException(source, "config.json must hold a JSON object");
        var missing = RequiredFields.Where(f => !root.TryGetProperty(f, out var v) || v.ValueKind == JsonValueKind.Null).ToList();
        if (missing.Count > 0)
            throw new WhaleFormatException(source, $"required field(s) {string.Join(", ", missing)} missing (a config.json must set {string.Join(", ", RequiredFields)})");
        if (root.TryGetProperty("model_type", out var mt))
        {
            var type = mt.ValueKind == JsonValueKind.String ? mt.GetString() : mt.GetRawText();
            if (type is null || !ModelTypes.Contains(type))
                throw new WhaleFormatException(source, $"model_type = '{type}' is not supported (must be one of {string.Join(", ", ModelTypes)})");
        }
    }
}
