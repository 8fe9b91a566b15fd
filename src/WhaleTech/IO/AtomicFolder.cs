// Folders replaced atomically (checkpoints): the new contents are written into a fresh temporary folder next to
// the target, then swapped in by two renames (old → "<folder>.old", new → folder) and the old one dropped. A crash
// or kill mid-write leaves the previous folder intact; a kill between the two renames leaves it as "<folder>.old",
// which Existing finds.
namespace WhaleTech.IO;

public static class AtomicFolder
{
    /// <summary>Writes the new contents through <paramref name="write"/> (given the temporary folder) and swaps them in.</summary>
    public static void Replace(string folder, Action<string> write)
    {
        var full = Path.GetFullPath(folder);
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        var tmp = Path.Combine(parent, "." + Path.GetFileName(full) + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp");
        try
        {
            Directory.CreateDirectory(tmp);
            write(tmp);
            var old = full + ".old";
            if (Directory.Exists(old)) Directory.Delete(old, true);
            if (Directory.Exists(full)) Directory.Move(full, old);
            Directory.Move(tmp, full);
            if (Directory.Exists(old)) Directory.Delete(old, true);
        }
        finally
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        }
    }

    /// <summary>The folder to read: <paramref name="folder"/>, or its ".old" twin when a swap was cut short; null when neither exists.</summary>
    public static string? Existing(string folder)
    {
        var full = Path.GetFullPath(folder);
        return Directory.Exists(full) ? full : Directory.Exists(full + ".old") ? full + ".old" : null;
    }

    /// <summary>Deletes the folder and its ".old" twin.</summary>
    public static void Delete(string folder)
    {
        var full = Path.GetFullPath(folder);
        if (Directory.Exists(full)) Directory.Delete(full, true);
        if (Directory.Exists(full + ".old")) Directory.Delete(full + ".old", true);
    }
}
