// A character-level tokenizer: one token per character of a fixed alphabet, plus <pad> (0), <bos> (1)
// and <eos> (2). Small vocabularies keep the tiny models of the tour, the samples and GRPO fast.
namespace WhaleTech.Core;

public sealed class CharTokenizer
{
    public const int Pad = 0, Bos = 1, Eos = 2;
    const int Special = 3;
    readonly Dictionary<char, int> _ids;
    public string Alphabet { get; }
    public int VocabSize => Alphabet.Length + Special;

    /// <summary>Digits, lower-case letters, space and common punctuation/arithmetic signs.</summary>
    public const string DefaultAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz +-*/=()<>.,;:?!'\n";

    public CharTokenizer(string alphabet = DefaultAlphabet)
    {
        if (string.IsNullOrEmpty(alphabet)) throw new Runtime.WhaleArgumentException("alphabet", alphabet, "must hold at least one character");
        if (alphabet.Distinct().Count() != alphabet.Length) throw new Runtime.WhaleArgumentException("alphabet", alphabet, "must not repeat a character");
        Alphabet = alphabet;
        _ids = alphabet.Select((c, i) => (c, i)).ToDictionary(p => p.c, p => p.i + Special);
    }

    /// <summary>Token ids of <paramref name="text"/>; a character outside the alphabet is an error naming it.</summary>
    public int[] Encode(string text, bool addBos = false)
    {
        var ids = new List<int>(text.Length + 1);
        if (addBos) ids.Add(Bos);
        foreach (var c in text)
            ids.Add(_ids.TryGetValue(c, out var id) ? id
                : throw new Runtime.WhaleArgumentException("text", text, $"holds '{c}' (U+{(int)c:X4}), which is not in the tokenizer's alphabet \"{Alphabet.Replace("\n", "\\n")}\""));
        return ids.ToArray();
    }

    public bool CanEncode(string text) => text.All(_ids.ContainsKey);

    /// <summary>Text of <paramref name="ids"/>; special tokens are dropped, unknown ids shown as '?'.</summary>
    public string Decode(IEnumerable<int> ids)
    {
        var sb = new System.Text.StringBuilder();
        foreach (var id in ids)
        {
            if (id < Special) continue;
            int i = id - Special;
            sb.Append(i < Alphabet.Length ? Alphabet[i] : '?');
        }
        return sb.ToString();
    }

    public int IdOf(char c) => _ids.TryGetValue(c, out var id) ? id : throw new Runtime.WhaleArgumentException("character", c.ToString(), "must be in the tokenizer's alphabet");
}
