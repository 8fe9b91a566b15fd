// A short folder name for a machine, so results of different machines sit side by side:
// benchmarks/results/<tag>/<suite>.json, e.g. "nvidia-h100-80gb-hbm3" or "cpu-amd-epyc-7763-64-core-2t".
using System.Text;
using WhaleTech.Runtime;

namespace WhaleTech.Lab.Bench;

public static class MachineTag
{
    /// <summary>GPU name when the device is CUDA, else "cpu-" + CPU model + torch thread count ("…-2t").</summary>
    public static string For(MachineInfo m)
        => m.Gpu is not null ? Slug(m.Gpu) : $"cpu-{Slug(m.Cpu)}-{m.TorchThreads}t";

    /// <summary>Lower-case letters and digits joined by single '-'; trademark marks, "CPU" and clock speeds dropped.</summary>
    public static string Slug(string text)
    {
        var s = text.ToLowerInvariant().Replace("(r)", " ").Replace("(tm)", " ");
        int at = s.IndexOf('@');
        if (at >= 0) s = s[..at];                                 // "… CPU @ 2.10GHz"
        var words = s.Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(w => w is not "cpu" and not "processor");
        var sb = new StringBuilder();
        foreach (char c in string.Join(" ", words))
            sb.Append(char.IsAsciiLetterOrDigit(c) ? c : '-');
        var slug = string.Join("-", sb.ToString().Split('-', StringSplitOptions.RemoveEmptyEntries));
        return slug.Length == 0 ? "unknown" : slug.Length > 48 ? slug[..48].TrimEnd('-') : slug;
    }
}
