// Fuzzing the file readers (issue 9, item 1): mutated safetensors files and config.json texts, derived
// from valid ones, must each end in success or a WhaleFormatException / WhaleArgumentException:
// no other exception, no native crash, no hang, and no allocation beyond a small multiple of the input.
// Seeded, in memory, a few seconds in all.
using System.Text;
using WhaleTech.IO;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Tests.IO;

public class FuzzTests
{
    const int Cases = 10_000;

    public FuzzTests() => Backend.Initialize();

    static List<byte[]> SeedFiles()
    {
        using var scope = NewDisposeScope();
        var g = new TorchSharp.torch.Generator(seed: 1);
        return
        [
            SafeTensorsWriter.ToBytes([("a", randn(new long[] { 2, 3 }, generator: g))]),
            SafeTensorsWriter.ToBytes([
                ("model.layers.0.self_attn.q_proj.weight", randn(new long[] { 4, 4 }, generator: g).to_type(ScalarType.BFloat16)),
                ("model.layers.0.mlp.gate.e_score_correction_bias", zeros(4)),
                ("ids", arange(5, dtype: ScalarType.Int64)),
                ("mask", ones(3, dtype: ScalarType.Bool)),
                ("fp8", randn(new long[] { 2, 2 }, generator: g).to_type(SafeTensorsDTypes.Float8E4M3)),
                ("scalar", tensor(1.5)),
                ("empty", zeros(new long[] { 0, 3 }, dtype: ScalarType.Float16)),
            ], new Dictionary<string, string> { ["format"] = "pt", ["k"] = "v" }),
            SafeTensorsWriter.ToBytes([]),
        ];
    }

    static readonly string[] Tokens =
    [
        "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u0000", "\\ud800", "-1", "0", "1e400", "1.5", "18446744073709551616",
        "9223372036854775807", "4294967296", "null", "true", "\"F32\"", "\"F8_E4M3\"", "\"X\"", "\"shape\"", "\"dtype\"",
        "\"data_offsets\"", "\"__metadata__\"", "[]", "{}", "[0,0]", "[1,2,3]", " ", "\n", "/*c*/",
    ];

    static byte[] Mutate(byte[] seed, Random rng)
    {
        int n = (int)BitConverter.ToInt64(seed, 0);
        var header = Encoding.UTF8.GetString(seed, 8, n);
        byte[] data = seed[(8 + n)..];
        switch (rng.Next(9))
        {
            case 0: // truncate
                return seed[..rng.Next(seed.Length)];
            case 1: // flip bytes anywhere
            {
                var b = (byte[])seed.Clone();
                for (int k = rng.Next(1, 5); k > 0; k--) b[rng.Next(b.Length)] ^= (byte)(1 << rng.Next(8));
                return b;
            }
            case 2: // random bytes in the header (invalid UTF-8 included)
            {
                var b = (byte[])seed.Clone();
                for (int k = rng.Next(1, 4); k > 0; k--) b[8 + rng.Next(n)] = (byte)rng.Next(256);
                return b;
            }
            case 3: // edit the length field
            {
                var b = (byte[])seed.Clone();
                long v = rng.Next(6) switch
                {
                    0 => -rng.Next(1, 1000), 1 => long.MaxValue - rng.Next(10), 2 => n + rng.Next(-16, 17),
                    3 => rng.Next(0, 9), 4 => 100_000_001, _ => rng.NextInt64(),
                };
                BitConverter.GetBytes(v).CopyTo(b, 0);
                return b;
            }
            case 4: // append or drop data bytes
                return rng.Next(2) == 0 ? seed.Concat(new byte[rng.Next(1, 20)]).ToArray() : seed[..Math.Max(0, seed.Length - rng.Next(1, 9))];
            default: // JSON structure edits, length field kept consistent (so the parser and validator are reached)
            {
                var h = new StringBuilder(header.TrimEnd());
                for (int k = rng.Next(1, 4); k > 0; k--)
                {
                    int at = rng.Next(h.Length + 1);
                    switch (rng.Next(6))
                    {
                        case 0: h.Insert(at, Tokens[rng.Next(Tokens.Length)]); break;
                        case 1: if (h.Length > 0) h.Remove(Math.Min(at, h.Length - 1), Math.Min(rng.Next(1, 6), h.Length - Math.Min(at, h.Length - 1))); break;
                        case 2: ReplaceNumber(h, rng); break;
                        case 3: // duplicate a tensor entry (duplicate key) or swap a dtype
                        {
                            var s = h.ToString();
                            foreach (var dt in new[] { "F32", "BF16", "I64", "BOOL", "F8_E4M3", "F64" })
                                if (s.Contains(dt) && rng.Next(2) == 0) { s = s.Replace(dt, new[] { "F16", "U8", "I32", "F8_E5M2", "U64", "Q8" }[rng.Next(6)]); break; }
                            int end = s.IndexOf("]}", StringComparison.Ordinal);
                            if (end > 0 && rng.Next(2) == 0) s = s[..(end + 2)] + "," + s[1..(end + 2)] + s[(end + 2)..];
                            h.Clear().Append(s);
                            break;
                        }
                        case 4: h.Insert(at, "{\"x\":" + new string('[', rng.Next(1, 40))); break;
                        default: if (h.Length > 0) h[Math.Min(at, h.Length - 1)] = (char)rng.Next(0, 0x250); break;
                    }
                }
                var hb = Encoding.UTF8.GetBytes(h.ToString());
                if (rng.Next(3) == 0) hb = hb.Concat(Enumerable.Repeat((byte)' ', rng.Next(8))).ToArray();
                return BitConverter.GetBytes((long)hb.Length).Concat(hb).Concat(data).ToArray();
            }
        }
    }

    static void ReplaceNumber(StringBuilder h, Random rng)
    {
        var s = h.ToString();
        var digits = Enumerable.Range(0, s.Length).Where(i => char.IsDigit(s[i]) && (i == 0 || !char.IsDigit(s[i - 1]))).ToList();
        if (digits.Count == 0) return;
        int start = digits[rng.Next(digits.Count)], end = start;
        while (end < s.Length && char.IsDigit(s[end])) end++;
        string[] values = ["0", "1", "-1", "7", "24", "9223372036854775807", "4611686018427387904", "1e3", "2.5", "99999999999"];
        h.Clear().Append(s[..start]).Append(values[rng.Next(values.Length)]).Append(s[end..]);
    }

    [Fact]
    public void SafeTensorsReaderSurvivesTenThousandMutatedFiles()
    {
        var seeds = SeedFiles();
        var rng = new Random(20240601);
        var unexpected = new List<string>();
        int ok = 0, rejected = 0;
        for (int i = 0; i < Cases; i++)
        {
            var bytes = Mutate(seeds[i % seeds.Count], rng);
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                var f = SafeTensorsFile.Read(bytes, "fuzz.safetensors");
                long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                if (allocated > 64 * 1024 + 16L * bytes.Length)
                    unexpected.Add($"case {i}: header parse allocated {allocated} bytes for a {bytes.Length}-byte file");
                using var scope = NewDisposeScope();
                foreach (var t in f.Tensors)
                {
                    if (t.DType.ToScalarType() is null) { _ = f.ReadBytes(t.Name); continue; }
                    var x = f.ToTensor(t.Name);
                    if (x.numel() != t.ElementCount) unexpected.Add($"case {i}: '{t.Name}' has {x.numel()} elements, header says {t.ElementCount}");
                    if (x.numel() > 0) _ = x.to_type(ScalarType.Float32).sum().item<float>();
                }
                ok++;
            }
            catch (WhaleFormatException e) when (e.Path == "fuzz.safetensors") { rejected++; }
            catch (WhaleArgumentException) { rejected++; }
            catch (Exception e) { unexpected.Add($"case {i}: {e.GetType().Name}: {e.Message}"); }
        }
        Assert.True(unexpected.Count == 0, string.Join("\n", unexpected.Take(20)));
        Assert.True(ok > 100 && rejected > Cases / 2, $"ok {ok}, rejected {rejected}");
    }

    [Fact]
    public void ConfigReaderSurvivesTenThousandMutatedTexts()
    {
        string[] seeds =
        [
            ModelConfig.Tiny().ToJson(),
            ModelConfig.Tiny("gqa").ToJson(),
            (ModelConfig.Tiny() with
            {
                NRoutedExperts = 8, NumExpertsPerTok = 2, NSharedExperts = 1, NGroup = 2, TopkGroup = 1,
                QLoraRank = 16, RopeScaling = new RopeScaling { Factor = 4, MscaleAllDim = 1 },
            }).Validate().ToJson(),
        ];
        var rng = new Random(7);
        var unexpected = new List<string>();
        int ok = 0, rejected = 0;
        for (int i = 0; i < Cases; i++)
        {
            var text = MutateText(seeds[i % seeds.Length], rng);
            try { ModelConfig.FromJson(text, "fuzz/config.json"); ok++; }
            catch (WhaleFormatException e) when (e.Path == "fuzz/config.json") { rejected++; }
            catch (WhaleArgumentException) { rejected++; }
            catch (Exception e) { unexpected.Add($"case {i}: {e.GetType().Name}: {e.Message}\n{text}"); }
        }
        Assert.True(unexpected.Count == 0, string.Join("\n", unexpected.Take(5)));
        Assert.True(ok > 100 && rejected > 1000, $"ok {ok}, rejected {rejected}");
    }

    static readonly string[] Values =
    [
        "0", "-1", "1", "3", "1e308", "-1e308", "1e400", "NaN", "\"NaN\"", "Infinity", "2147483648", "0.5", "null", "true",
        "\"x\"", "\"mla\"", "\"gqa\"", "\"yarn\"", "\"linear\"", "[]", "{}", "[1,2]", "{\"type\":\"yarn\",\"factor\":0}", "\"\\ud800\"",
    ];

    static string MutateText(string seed, Random rng)
    {
        var lines = seed.Split('\n').ToList();
        for (int k = rng.Next(1, 4); k > 0; k--)
        {
            int li = rng.Next(lines.Count);
            string line = lines[li];
            int colon = line.IndexOf("\": ", StringComparison.Ordinal);
            switch (rng.Next(7))
            {
                case 0 when colon > 0: // replace a value
                    lines[li] = line[..(colon + 3)] + Values[rng.Next(Values.Length)] + (line.TrimEnd().EndsWith(',') ? "," : "");
                    break;
                case 1: lines.Insert(li, line); break; // duplicate a key
                case 2: lines.RemoveAt(li); if (lines.Count == 0) lines.Add(""); break;
                case 3: // truncate the text
                    return string.Join('\n', lines)[..rng.Next(string.Join('\n', lines).Length)];
                case 4 when line.Length > 0: // random character
                {
                    var c = line.ToCharArray();
                    c[rng.Next(c.Length)] = (char)rng.Next(0, 0xFFFF);
                    lines[li] = new string(c);
                    break;
                }
                case 5: lines.Insert(li, "  \"" + new[] { "hidden_size", "rope_scaling", "whaletech_attention", "n_routed_experts", "extra_field" }[rng.Next(5)] + "\": " + Values[rng.Next(Values.Length)] + ","); break;
                default: lines[li] = line.Replace("\"", rng.Next(2) == 0 ? "" : "'"); break;
            }
        }
        return string.Join('\n', lines);
    }
}
