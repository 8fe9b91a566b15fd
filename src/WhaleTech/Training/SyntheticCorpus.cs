// A small synthetic corpus with real structure, so a tiny model has something to learn in a minute on a
// CPU: sentences from a little grammar (agreement: "a cat sees" / "the cats see"), arithmetic facts
// ("17+25=42."), counting runs ("3 4 5 6.") and copies ("abc>abc."). A model that learns the structure gets
// well below its unigram (character) entropy (e.g. eval loss 0.655 nats/char: benchmarks/results/mtp-cpu/train-l4-eval.txt).
// Train and evaluation text come from different seeds, so eval loss measures generalization.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Training;

public sealed class SyntheticCorpus
{
    static readonly string[] Adjectives = ["red", "big", "old", "small", "quick", "blue"];
    static readonly string[] Nouns = ["cat", "dog", "bird", "fox", "whale", "fish"];
    static readonly string[] VerbsSingular = ["sees", "likes", "finds", "follows"];
    static readonly string[] VerbsPlural = ["see", "like", "find", "follow"];

    public string Text { get; }

    public SyntheticCorpus(int characters, int seed)
    {
        Runtime.Guard.Positive("characters", characters);
        var rng = new Random(seed);
        var sb = new System.Text.StringBuilder(characters + 64);
        while (sb.Length < characters) sb.Append(Line(rng)).Append('\n');
        Text = sb.ToString(0, characters);
    }

    static string Line(Random rng) => rng.Next(4) switch
    {
        0 => Sentence(rng),
        1 => Arithmetic(rng),
        2 => Counting(rng),
        _ => Copy(rng),
    };

    static string NounPhrase(Random rng, bool plural) =>
        (plural ? "the " : rng.Next(2) == 0 ? "a " : "the ") + Adjectives[rng.Next(Adjectives.Length)] + " " + Nouns[rng.Next(Nouns.Length)] + (plural ? "s" : "");

    static string Sentence(Random rng)
    {
        bool plural = rng.Next(2) == 0;
        var verb = plural ? VerbsPlural[rng.Next(VerbsPlural.Length)] : VerbsSingular[rng.Next(VerbsSingular.Length)];
        return NounPhrase(rng, plural) + " " + verb + " " + NounPhrase(rng, rng.Next(2) == 0) + ".";
    }

    static string Arithmetic(Random rng)
    {
        int a = rng.Next(0, 50), b = rng.Next(0, 50);
        return $"{a}+{b}={a + b}.";
    }

    static string Counting(Random rng)
    {
        int start = rng.Next(0, 10), n = rng.Next(3, 7);
        return string.Join(" ", Enumerable.Range(start, n)) + ".";
    }

    static string Copy(Random rng)
    {
        var letters = new string(Enumerable.Range(0, rng.Next(2, 6)).Select(_ => (char)('a' + rng.Next(8))).ToArray());
        return letters + ">" + letters + ".";
    }

    /// <summary>Entropy (nats) of the character distribution: the loss of a model that ignores context.</summary>
    public double UnigramEntropyNats()
    {
        var counts = Text.GroupBy(c => c).Select(g => (double)g.Count()).ToArray();
        double n = counts.Sum();
        return -counts.Sum(c => c / n * Math.Log(c / n));
    }
}

/// <summary>Seeded stream of [B, T+1] training windows cut from token ids.</summary>
public sealed class TokenWindowStream
{
    readonly long[] _tokens;
    readonly Random _rng;
    public int BatchSize { get; }
    public int SequenceLength { get; }
    public int Seed { get; }
    /// <summary>Batches drawn so far (a checkpoint records it; resuming skips that many).</summary>
    public long BatchesDrawn { get; private set; }

    public TokenWindowStream(int[] tokens, int batchSize, int sequenceLength, int seed)
    {
        BatchSize = Runtime.Guard.Positive("batch_size", batchSize);
        SequenceLength = Runtime.Guard.Positive("seq_len", sequenceLength);
        if (tokens.Length < sequenceLength + 2)
            throw new Runtime.WhaleArgumentException("seq_len", sequenceLength, $"must be < the corpus length {tokens.Length} − 1");
        _tokens = tokens.Select(t => (long)t).ToArray();
        _rng = new Random(seed);
        Seed = seed;
    }

    /// <summary>Draws and discards <paramref name="batches"/> batches' random offsets (resume).</summary>
    public void Skip(long batches)
    {
        if (batches < 0) throw new Runtime.WhaleArgumentException("batches", batches, "must be ≥ 0 (the stream is already past the checkpoint)");
        for (long i = 0; i < batches; i++) { NextOffsets(); BatchesDrawn++; }
    }

    int[] NextOffsets() => Enumerable.Range(0, BatchSize).Select(_ => _rng.Next(0, _tokens.Length - SequenceLength - 1)).ToArray();

    /// <summary>Next batch: inputs [B, T] and targets [B, T] (inputs shifted by one).</summary>
    public (Tensor Inputs, Tensor Targets) Next(Device device)
    {
        int T = SequenceLength;
        var data = new long[BatchSize * (T + 1)];
        var offsets = NextOffsets();
        BatchesDrawn++;
        for (int b = 0; b < BatchSize; b++)
            Array.Copy(_tokens, offsets[b], data, b * (T + 1), T + 1);
        using var all = torch.tensor(data, [BatchSize, T + 1]);
        return (all.narrow(1, 0, T).to(device), all.narrow(1, 1, T).to(device));
    }
}
