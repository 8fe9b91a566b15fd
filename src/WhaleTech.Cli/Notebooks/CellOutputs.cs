// Collects what one running cell produces, in order: Console text (merged into stream outputs) and
// Display items (display_data outputs). Console.Out/Error are redirected to a router once; the router
// sends text to the collector of the current async flow, so other threads' printing is not mixed in.
using System.Text;
using System.Text.Json.Nodes;
using WhaleTech.Lab.Notebooks;

namespace WhaleTech.Cli.Notebooks;

sealed class CellOutputs
{
    readonly List<JsonObject> _outputs = new();
    readonly StringBuilder _pending = new();
    string _pendingStream = "stdout";
    readonly object _gate = new();

    public void Write(string stream, string text)
    {
        lock (_gate)
        {
            if (_pending.Length > 0 && stream != _pendingStream) FlushLocked();
            _pendingStream = stream;
            _pending.Append(text);
        }
    }

    public void Add(DisplayItem item)
    {
        lock (_gate)
        {
            FlushLocked();
            _outputs.Add(NotebookDocument.DisplayData(item.MimeType, item.Data, item.PlainText));
        }
    }

    public void Add(JsonObject output)
    {
        lock (_gate) { FlushLocked(); _outputs.Add(output); }
    }

    public List<JsonObject> Finish()
    {
        lock (_gate) { FlushLocked(); return _outputs; }
    }

    void FlushLocked()
    {
        if (_pending.Length == 0) return;
        _outputs.Add(NotebookDocument.Stream(_pendingStream, _pending.ToString()));
        _pending.Clear();
    }
}

/// <summary>A Console writer that hands text to the current flow's <see cref="CellOutputs"/>, else to the original writer.</summary>
sealed class ConsoleRouter : TextWriter
{
    static readonly AsyncLocal<CellOutputs?> Current = new();
    static readonly object Gate = new();
    static int _users;
    static TextWriter? _out, _err;

    readonly string _stream;
    readonly TextWriter _fallback;
    ConsoleRouter(string stream, TextWriter fallback) { _stream = stream; _fallback = fallback; }

    public override Encoding Encoding => _fallback.Encoding;
    public override void Write(char value) => Route(value.ToString());
    public override void Write(string? value) { if (!string.IsNullOrEmpty(value)) Route(value); }
    public override void Write(char[] buffer, int index, int count) => Route(new string(buffer, index, count));
    public override void Flush() => _fallback.Flush();

    void Route(string text)
    {
        if (Current.Value is { } cell) cell.Write(_stream, text);
        else _fallback.Write(text);
    }

    /// <summary>Sends this flow's Console output to <paramref name="cell"/> until disposed.</summary>
    public static IDisposable Capture(CellOutputs cell)
    {
        lock (Gate)
        {
            if (_users++ == 0)
            {
                _out = Console.Out; _err = Console.Error;
                Console.SetOut(new ConsoleRouter("stdout", _out));
                Console.SetError(new ConsoleRouter("stderr", _err));
            }
        }
        var previous = Current.Value;
        Current.Value = cell;
        return new Release(previous);
    }

    sealed class Release(CellOutputs? previous) : IDisposable
    {
        bool _done;
        public void Dispose()
        {
            if (_done) return;
            _done = true;
            Current.Value = previous;
            lock (Gate)
            {
                if (--_users == 0) { Console.SetOut(_out!); Console.SetError(_err!); }
            }
        }
    }
}
