// What a notebook cell may ask of the program running it. Today: the device chosen with
// `whale notebook run … --device`, so one notebook runs on a laptop CPU and on a GPU unchanged:
//     var device = Notebook.Device;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Lab.Notebooks;

public static class Notebook
{
    static readonly AsyncLocal<Device?> Current = new();

    /// <summary>The device the runner was given; outside a runner, `auto` (CUDA when present, else CPU).</summary>
    public static Device Device => Current.Value ?? Backend.ResolveDevice("auto");

    /// <summary>Sets <see cref="Device"/> for this async flow until disposed (the notebook runner uses it).</summary>
    public static IDisposable Use(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        var previous = Current.Value;
        Current.Value = device;
        return new Restore(() => Current.Value = previous);
    }

    sealed class Restore(Action undo) : IDisposable
    {
        Action? _undo = undo;
        public void Dispose() { _undo?.Invoke(); _undo = null; }
    }
}
