// One thread-safe name → item registry for every plug point (attention variants, FP8 granularities, recipes and
// scaling policies, GRPO tasks, rewards and loss aggregations). Each registry states its rules when it is built:
//   - names compare with the given StringComparer (Ordinal = case-sensitive, OrdinalIgnoreCase = not);
//   - a looked-up name is first passed through the given key function (e.g. trim, lower-case); a null name is
//     never found;
//   - registering a name again replaces the item in its place, replaces it and moves it last, or throws;
//   - Names and Items are in registration order (snapshots, safe to enumerate while others register);
//   - an unknown name is a WhaleArgumentException naming the parameter, the value and the registered names
//     ("<parameter> = '<value>' is not allowed: must be one of a, b, c.").
// Every member takes one lock, so registering from several threads while others look up is safe.
namespace WhaleTech.Runtime;

/// <summary>What registering a name that is already registered does.</summary>
public enum DuplicateName
{
    /// <summary>The new item replaces the old one at the old one's position in <see cref="NamedRegistry{T}.Names"/>
    /// (the name keeps its first spelling, as a dictionary's key does).</summary>
    ReplaceInPlace,
    /// <summary>The old item is removed and the new one appended last.</summary>
    ReplaceAndMoveLast,
    /// <summary>An <see cref="ArgumentException"/>: a name is registered once.</summary>
    Throw,
}

public sealed class NamedRegistry<T> where T : class
{
    readonly Lock _lock = new();
    readonly List<(string Name, T Item)> _entries = [];
    readonly StringComparer _comparer;
    readonly DuplicateName _duplicates;
    readonly Func<string, string> _key;

    /// <param name="comparer">How names compare, at registration and lookup.</param>
    /// <param name="duplicates">What registering a registered name again does.</param>
    /// <param name="key">Applied to a looked-up name before comparing (null = the name as given).</param>
    /// <param name="initial">Entries registered first, in order (under the same duplicate rule).</param>
    public NamedRegistry(StringComparer comparer, DuplicateName duplicates, Func<string, string>? key = null, IEnumerable<(string Name, T Item)>? initial = null)
    {
        _comparer = comparer ?? throw new ArgumentNullException(nameof(comparer));
        _duplicates = duplicates;
        _key = key ?? (s => s);
        foreach (var (name, item) in initial ?? []) Register(name, item);
    }

    /// <summary>Registers <paramref name="item"/> under <paramref name="name"/> (a registered name follows the duplicate rule).</summary>
    public T Register(string name, T item)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(item);
        lock (_lock)
        {
            int i = IndexOf(name);
            if (i < 0) _entries.Add((name, item));
            else switch (_duplicates)
            {
                case DuplicateName.ReplaceInPlace: _entries[i] = (_entries[i].Name, item); break;
                case DuplicateName.ReplaceAndMoveLast: _entries.RemoveAt(i); _entries.Add((name, item)); break;
                default: throw new ArgumentException($"'{name}' is already registered (as '{_entries[i].Name}')", nameof(name));
            }
        }
        return item;
    }

    /// <summary>The registered names, in registration order.</summary>
    public IReadOnlyList<string> Names { get { lock (_lock) return _entries.Select(e => e.Name).ToList(); } }

    /// <summary>The registered items, in the order of <see cref="Names"/>.</summary>
    public IReadOnlyList<T> Items { get { lock (_lock) return _entries.Select(e => e.Item).ToList(); } }

    /// <summary>The item registered under the key of <paramref name="name"/>, if any.</summary>
    public bool TryGet(string? name, out T item)
    {
        item = null!;
        if (name is null) return false;
        var key = _key(name);
        lock (_lock)
        {
            int i = IndexOf(key);
            if (i < 0) return false;
            item = _entries[i].Item;
            return true;
        }
    }

    public bool Contains(string? name) => TryGet(name, out _);

    /// <summary>The item registered under the key of <paramref name="name"/>; an unknown name is <see cref="Unknown"/>.</summary>
    public T Get(string? name, string parameter) => TryGet(name, out var item) ? item : throw Unknown(parameter, name);

    /// <summary>The first entry, in registration order, that <paramref name="match"/> accepts (name, item); null if none.
    /// For lookups beyond the key (aliases, a second name an item carries).</summary>
    public T? Find(Func<string, T, bool> match)
    {
        ArgumentNullException.ThrowIfNull(match);
        lock (_lock)
            foreach (var (name, item) in _entries)
                if (match(name, item)) return item;
        return null;
    }

    /// <summary>The error for an unknown <paramref name="value"/> of <paramref name="parameter"/>: it lists the registered names.</summary>
    public WhaleArgumentException Unknown(string parameter, string? value) => new(parameter, value, "must be one of " + string.Join(", ", Names));

    int IndexOf(string name) => _entries.FindIndex(e => _comparer.Equals(e.Name, name));
}
