// What a notebook cell may ask of the program running it. Today: the device, so one notebook runs on a laptop
// CPU and on a GPU unchanged. WHALETECH_DEVICE (auto | cpu | cuda | cuda:N, read on each call) chooses it;
// tools/notebooks/run-all.sh sets cpu, so the stored outputs are CPU outputs:
//     var device = Notebook.Device;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Lab.Notebooks;

public static class Notebook
{
    static readonly AsyncLocal<Device?> Current = new();

    public const string DeviceVariable = "WHALETECH_DEVICE";

    /// <summary>The device set with <see cref="Use"/>; else WHALETECH_DEVICE; else `auto` (CUDA when present, else CPU).</summary>
    public static Device Device => Current.Value ?? Backend.ResolveDevice(
        Environment.GetEnvironmentVariable(DeviceVariable) is { Length: > 0 } name ? name : "auto");

    /// <summary>Sets <see cref="Device"/> for this async flow until disposed (a host program or a test uses it).</summary>
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
