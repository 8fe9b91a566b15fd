using System.Text;
using TorchSharp;
using WhaleTech.IO;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Tests.IO;

public class SafeTensorsTests
{
    public SafeTensorsTests() => Backend.Initialize();

    static string TempDir()
    {
        var d = Path.Combine(Path.GetTempPath(), "whaletech-io-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(d);
        return d;
    }

    static byte[] F32Bytes(params float[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();

    [Fact]
    public void MatchesTheReferenceWritersBytes()
    {
        // Bytes the Hugging Face writer produces for {"attn.0": F32 [1,2,3] = 0..5} (its own unit test).
        using var t = arange(6, dtype: ScalarType.Float32).reshape(1, 2, 3);
        var bytes = SafeTensorsWriter.ToBytes([("attn.0", t)]);
        var header = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
        var expected = new byte[] { 64, 0, 0, 0, 0, 0, 0, 0 }.Concat(Encoding.ASCII.GetBytes(header))
            .Concat(F32Bytes(0, 1, 2, 3, 4, 5)).ToArray();
        Assert.Equal(expected, bytes);

        // Empty file, and metadata only: "{}" + 6 spaces; {"__metadata__":{"framework":"pt"}} + 5 spaces.
        Assert.Equal(new byte[] { 8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32 }, SafeTensorsWriter.ToBytes([]));
        var meta = SafeTensorsWriter.ToBytes([], new Dictionary<string, string> { ["framework"] = "pt" });
        Assert.Equal(40, meta[0]);
        Assert.Equal("{\"__metadata__\":{\"framework\":\"pt\"}}     ", Encoding.ASCII.GetString(meta, 8, 40));
    }

    [Fact]
    public void OrdersLikeTheReferenceWriterAndAlignsData()
    {
        using var a = ones(3, dtype: ScalarType.Bool);
        using var b = ones(5, dtype: ScalarType.Float32);
        using var c = ones(1, dtype: ScalarType.Float64);
        using var d = ones(2, dtype: ScalarType.Float32);
        var f = SafeTensorsFile.Read(SafeTensorsWriter.ToBytes([("z_bool", a), ("b_f32", b), ("c_f64", c), ("a_f32", d)]));
        Assert.Equal(new[] { "c_f64", "a_f32", "b_f32", "z_bool" }, f.Names);
        Assert.Equal(0, f.DataStart % 8);
    }

    [Fact]
    public void EveryDtypeRoundTripsExactly()
    {
        var types = new[] { ScalarType.Float64, ScalarType.Float32, ScalarType.Float16, ScalarType.BFloat16, ScalarType.Int64,
            ScalarType.Int32, ScalarType.Int16, ScalarType.Int8, ScalarType.Byte, ScalarType.Bool,
            SafeTensorsDTypes.Float8E4M3, SafeTensorsDTypes.Float8E5M2 };
        var gen = new Generator(seed: 7);
        var tensors = new List<(string, Tensor)>();
        foreach (var st in types)
        {
            // Random bit patterns for integer-like types, random values for floats.
            using var src = randn(new long[] { 3, 5 }, generator: gen) * 4;
            Tensor t = st switch
            {
                ScalarType.Bool => src.gt(0),
                ScalarType.Byte or ScalarType.Int8 or ScalarType.Int16 or ScalarType.Int32 or ScalarType.Int64 => (src * 1000).to_type(st),
                _ => src.to_type(st),
            };
            tensors.Add(($"t.{st}", t));
        }
        using var scalar = tensor(3.5f);
        using var empty0 = zeros(new long[] { 0, 4 }, dtype: ScalarType.BFloat16);
        tensors.Add(("scalar", scalar));
        tensors.Add(("empty", empty0));

        var dir = TempDir();
        var path = Path.Combine(dir, "all.safetensors");
        SafeTensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünï\"code\n" });
        var f = SafeTensorsFile.Open(path);
        Assert.Equal("ünï\"code\n", f.Metadata!["note"]);
        foreach (var (name, t) in tensors)
        {
            using var back = f.ToTensor(name);
            Assert.Equal(t.dtype, back.dtype);
            Assert.Equal(t.shape, back.shape);
            Assert.Equal(t.bytes.ToArray(), back.bytes.ToArray());
        }
        // Byte-identical round trip: read, write back, compare.
        var path2 = Path.Combine(dir, "again.safetensors");
        f.Save(path2);
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(path2));
        Assert.Equal(File.ReadAllBytes(path), SafeTensorsFile.Read(File.ReadAllBytes(path), "mem").ToBytes());
        foreach (var (_, t) in tensors) t.Dispose();
        Directory.Delete(dir, true);
    }

    [Fact]
    public void Float8ValuesConvertToFloat32()
    {
        // E4M3: 0x38 = 1.0, 0x40 = 2.0, 0xB8 = -1.0, 0x7E = 448 (max). E5M2: 0x3C = 1.0, 0x7B = 57344 (max).
        var e4 = new byte[] { 0x38, 0x40, 0xB8, 0x7E };
        var e5 = new byte[] { 0x3C, 0x7B };
        var raw = SafeTensorsWriter.ToBytesRaw([
            new SafeTensorsWriter.RawTensor("e4", SafeTensorsDType.F8_E4M3, [4], 4, s => s.Write(e4)),
            new SafeTensorsWriter.RawTensor("e5", SafeTensorsDType.F8_E5M2, [2], 2, s => s.Write(e5))]);
        var f = SafeTensorsFile.Read(raw);
        Assert.Equal(new float[] { 1, 2, -1, 448 }, f.ToFloat32Array("e4"));
        Assert.Equal(new float[] { 1, 57344 }, f.ToFloat32Array("e5"));
        Assert.Equal(e4, f.ReadBytes("e4"));
    }

    [Fact]
    public void ChunkedPathsMoveTheSameBytes()
    {
        int saved = TensorBytes.ChunkBytes;
        try
        {
            TensorBytes.ChunkBytes = 12; // 3 floats per chunk, 7 chunks and a tail
            using var t = randn(4, 5);
            var bytes = SafeTensorsWriter.ToBytes([("t", t)]);
            using var back = SafeTensorsFile.Read(bytes).ToTensor("t");
            Assert.Equal(t.data<float>().ToArray(), back.data<float>().ToArray());
            using var slice = t.t(); // non-contiguous input
            using var back2 = SafeTensorsFile.Read(SafeTensorsWriter.ToBytes([("s", slice)])).ToTensor("s");
            Assert.Equal(slice.contiguous().data<float>().ToArray(), back2.data<float>().ToArray());
        }
        finally { TensorBytes.ChunkBytes = saved; }
    }

    [Fact]
    public void WriterRejectsBadInput()
    {
        using var a = ones(2);
        Assert.Throws<WhaleArgumentException>(() => SafeTensorsWriter.ToBytes([("x", a), ("x", a)]));
        Assert.Throws<WhaleArgumentException>(() => SafeTensorsWriter.ToBytes([("__metadata__", a)]));
        using var c = ones(2, dtype: ScalarType.ComplexFloat32);
        Assert.Contains("Float8", Assert.Throws<WhaleArgumentException>(() => SafeTensorsWriter.ToBytes([("c", c)])).Message);
    }

    [Fact]
    public void AtomicWriteLeavesThePreviousFileWhenAWriteFails()
    {
        var dir = TempDir();
        var path = Path.Combine(dir, "m.safetensors");
        using var a = ones(2);
        SafeTensorsWriter.Write(path, [("a", a)]);
        var before = File.ReadAllBytes(path);
        Assert.ThrowsAny<Exception>(() => SafeTensorsWriter.WriteRaw(path, [
            new SafeTensorsWriter.RawTensor("b", SafeTensorsDType.F32, [2], 8, _ => throw new IOException("disk full"))]));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Single(Directory.GetFiles(dir));
        Directory.Delete(dir, true);
    }

    // ---- strict validation ------------------------------------------------------------------------

    static byte[] File_(string header, int dataBytes, long? n = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        return BitConverter.GetBytes(n ?? h.Length).Concat(h).Concat(new byte[dataBytes]).ToArray();
    }

    static string Problem(byte[] bytes) => Assert.Throws<WhaleFormatException>(() => SafeTensorsFile.Read(bytes, "bad.safetensors")).Message;

    const string Ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";

    [Fact]
    public void RejectsCorruptFilesWithClearMessages()
    {
        Assert.Equal(2, SafeTensorsFile.Read(File_(Ok, 8)).ToFloat32Array("a").Length);
        Assert.Contains("bad.safetensors: truncated", Problem([1, 2, 3]));
        Assert.Contains("exceeds the safetensors limit", Problem(File_(Ok, 8, n: -5)));
        Assert.Contains("exceeds the safetensors limit", Problem(File_(Ok, 8, n: long.MaxValue)));
        Assert.Contains("runs past the end", Problem(File_(Ok, 8, n: 1000)));
        Assert.Contains("not valid UTF-8", Problem(File_(Ok, 8).Select((b, i) => i == 12 ? (byte)0xFF : b).ToArray()));
        Assert.Contains("not valid JSON", Problem(File_(Ok[..^1] + " ", 8)));
        Assert.Contains("must start with '{'", Problem(File_("[" + Ok[1..], 8)));
        Assert.Contains("duplicate key 'a'", Problem(File_("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8)));
        Assert.Contains("duplicate key 'shape'", Problem(File_("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"shape\":[2],\"data_offsets\":[0,8]}}", 8)));
        Assert.Contains("unknown dtype 'F33'", Problem(File_(Ok.Replace("F32", "F33"), 8)));
        Assert.Contains("needs 16 bytes", Problem(File_(Ok.Replace("[2]", "[4]"), 8)));
        Assert.Contains("out of range", Problem(File_(Ok.Replace("[0,8]", "[8,16]").Replace("[2]", "[2]"), 8)));
        Assert.Contains("cover 8 bytes but the data buffer holds 12", Problem(File_(Ok, 12)));
        Assert.Contains("out of range", Problem(File_(Ok, 4)));
        Assert.Contains("overlaps tensor 'a'", Problem(File_("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8)));
        Assert.Contains("gap of 4 bytes", Problem(File_("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8)));
        Assert.Contains("non-negative integers", Problem(File_(Ok.Replace("[2]", "[-2]"), 8)));
        Assert.Contains("non-negative integers", Problem(File_(Ok.Replace("[2]", "[2.0]"), 8)));
        Assert.Contains("non-negative integers", Problem(File_(Ok.Replace("[2]", "[99999999999999999999]"), 8)));
        Assert.Contains("absurd shape", Problem(File_(Ok.Replace("[2]", "[4294967296,4294967296,0]"), 8)));
        Assert.Contains("lacks data_offsets", Problem(File_("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8)));
        Assert.Contains("unknown field 'offsets'", Problem(File_(Ok.Replace("data_offsets", "offsets"), 8)));
        Assert.Contains("end before they begin", Problem(File_(Ok.Replace("[0,8]", "[8,0]"), 8)));
        Assert.Contains("__metadata__.k must be a string", Problem(File_("{\"__metadata__\":{\"k\":1}}", 0)));
        Assert.Contains("not valid JSON", Problem(File_(new string('[', 200), 0).Select((b, i) => i == 8 ? (byte)'{' : b).ToArray()));
    }

    [Fact]
    public void MissingFileAndUnknownNameAreArgumentErrors()
    {
        Assert.Throws<WhaleArgumentException>(() => SafeTensorsFile.Open("/nonexistent/x.safetensors"));
        var f = SafeTensorsFile.Read(File_(Ok, 8));
        Assert.Contains("(a)", Assert.Throws<WhaleArgumentException>(() => f.ToTensor("b")).Message);
    }

    [Fact]
    public void AFileTruncatedAfterOpeningIsAFormatError()
    {
        var dir = TempDir();
        var path = Path.Combine(dir, "t.safetensors");
        using var a = ones(1000);
        SafeTensorsWriter.Write(path, [("a", a)]);
        var f = SafeTensorsFile.Open(path);
        using (var fs = new FileStream(path, FileMode.Open)) fs.SetLength(fs.Length - 100);
        Assert.Contains("truncated after it was opened", Assert.Throws<WhaleFormatException>(() => f.ToTensor("a")).Message);
        Assert.Contains("out of range", Assert.Throws<WhaleFormatException>(() => SafeTensorsFile.Open(path)).Message);
        Directory.Delete(dir, true);
    }
}
