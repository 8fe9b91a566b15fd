// Ctrl-C (SIGINT) and SIGTERM for training loops: the first signal only sets a flag, so the loop finishes the
// step it is in, writes its checkpoint, summary and plots, says where, and the program exits with 130
// (128 + SIGINT), the shell's code for "interrupted". A second Ctrl-C is left to the runtime (immediate exit).
using System.Runtime.InteropServices;

namespace WhaleTech.Training;

public sealed class StopSignal : IDisposable
{
    /// <summary>The exit code of a run stopped by a signal: 128 + SIGINT.</summary>
    public const int ExitCode = 130;

    readonly PosixSignalRegistration? _term;
    readonly ConsoleCancelEventHandler _onCancel;
    volatile bool _requested;

    /// <summary>True once a stop was requested: finish the current step, save, and return.</summary>
    public bool Requested => _requested;

    /// <summary>Asks the loop to stop after its current step (what Ctrl-C does).</summary>
    public void Request() => _requested = true;

    /// <summary>Listens for Ctrl-C and SIGTERM until disposed.</summary>
    public static StopSignal Listen() => new(listen: true);

    /// <summary>A signal nothing but <see cref="Request"/> sets (library callers, tests).</summary>
    public static StopSignal Manual() => new(listen: false);

    StopSignal(bool listen)
    {
        _onCancel = (_, e) =>
        {
            if (_requested) return;          // second Ctrl-C: let the runtime end the process
            e.Cancel = true;
            _requested = true;
            Console.Error.WriteLine("\nstopping after this step (Ctrl-C again to quit at once) …");
        };
        if (!listen) return;
        Console.CancelKeyPress += _onCancel;
        if (!OperatingSystem.IsWindows())
            _term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; _requested = true; });
    }

    public void Dispose()
    {
        Console.CancelKeyPress -= _onCancel;
        _term?.Dispose();
    }
}
