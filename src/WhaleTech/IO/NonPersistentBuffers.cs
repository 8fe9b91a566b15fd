// Non-persistent buffers: tensors a module keeps (and moves with .to(device)) but that are not part of its
// checkpoint — PyTorch's register_buffer(name, t, persistent=False). TorchSharp 0.107's register_buffer has
// no such flag, so a module lists them by implementing INonPersistentBuffers, and StateDict leaves them out
// of what it saves and expects on load.
using static TorchSharp.torch;

namespace WhaleTech.IO;

/// <summary>A module whose buffers of these (local) names are not saved or loaded.</summary>
public interface INonPersistentBuffers
{
    IReadOnlyCollection<string> NonPersistentBufferNames { get; }
}

public static class NonPersistentBuffers
{
    /// <summary>Full dotted names (relative to <paramref name="root"/>) of every non-persistent buffer below it.</summary>
    public static HashSet<string> Names(nn.Module root)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        if (root is INonPersistentBuffers self)
            foreach (var n in self.NonPersistentBufferNames) names.Add(n);
        foreach (var (path, m) in root.named_modules())
            if (m is INonPersistentBuffers np && !ReferenceEquals(m, root))
                foreach (var n in np.NonPersistentBufferNames) names.Add(path.Length == 0 ? n : path + "." + n);
        return names;
    }
}
