using System.Text;
using TorchSharp;
using WhaleTech.IO;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Tests.IO;

public class CheckpointTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "whaletech-ckpt-" + Guid.NewGuid().ToString("N")[..8]);

    public CheckpointTests() { Backend.Initialize(); Directory.CreateDirectory(_dir); }
    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>A DeepSeek-V3-style FP8 weight: q = fp8(w / s) per 128×128 block, s = scale_inv [Bo, Bi].</summary>
    static (Tensor Q, Tensor S) Fp8Weight(long o, long i, Generator g)
    {
        var w = randn(new long[] { o, i }, generator: g);
        var s = rand(new long[] { (o + 127) / 128, (i + 127) / 128 }, generator: g) * 0.1f + 0.01f;
        var sFull = s.repeat_interleave(128, 0).repeat_interleave(128, 1).narrow(0, 0, o).narrow(1, 0, i);
        return ((w / sFull).to_type(SafeTensorsDTypes.Float8E4M3), s);
    }

    void WriteIndex(string folder, params (string Name, string File)[] map)
    {
        var sb = new StringBuilder("{\n  \"metadata\": {\"total_size\": 1234, \"note\": \"x\"},\n  \"weight_map\": {");
        sb.Append(string.Join(",", map.Select(m => $"\n    \"{m.Name}\": \"{m.File}\"")));
        sb.Append("\n  }\n}\n");
        File.WriteAllText(Path.Combine(folder, CheckpointReader.IndexFileName), sb.ToString());
    }

    [Fact]
    public void Fp8BlockDequantMatchesPerElementMath()
    {
        var g = new Generator(seed: 3);
        var (q, s) = Fp8Weight(200, 300, g); // partial blocks on both axes
        using var deq = Fp8BlockDequant.Dequantize(q, s);
        Assert.Equal(new long[] { 200, 300 }, deq.shape);
        Assert.Equal(ScalarType.Float32, deq.dtype);
        var qv = q.to_type(ScalarType.Float32).data<float>().ToArray();
        var sv = s.data<float>().ToArray();
        var dv = deq.data<float>().ToArray();
        int wrong = 0;
        for (int r = 0; r < 200; r++)
            for (int c = 0; c < 300; c++)
                if (qv[r * 300 + c] * sv[(r / 128) * 3 + c / 128] != dv[r * 300 + c]) wrong++;
        Assert.Equal(0, wrong);
        Assert.Throws<WhaleArgumentException>(() => Fp8BlockDequant.Dequantize(q, s.narrow(1, 0, 2)));
        q.Dispose(); s.Dispose();
    }

    [Fact]
    public void ShardedCheckpointWithFp8WeightsLoadsByName()
    {
        var g = new Generator(seed: 5);
        var (q, s) = Fp8Weight(130, 70, g);
        using var bias = randn(new long[] { 130 }, generator: g);
        using var ids = arange(4, dtype: ScalarType.Int64);
        using var norm = ones(new long[] { 70 }, dtype: ScalarType.BFloat16);
        SafeTensorsWriter.Write(Path.Combine(_dir, "model-00001-of-00002.safetensors"),
            [("model.layers.0.mlp.down_proj.weight", q), ("model.layers.0.mlp.down_proj.weight_scale_inv", s), ("ids", ids)]);
        SafeTensorsWriter.Write(Path.Combine(_dir, "model-00002-of-00002.safetensors"), [("bias", bias), ("model.norm.weight", norm)]);
        WriteIndex(_dir, ("model.layers.0.mlp.down_proj.weight", "model-00001-of-00002.safetensors"),
            ("model.layers.0.mlp.down_proj.weight_scale_inv", "model-00001-of-00002.safetensors"),
            ("ids", "model-00001-of-00002.safetensors"), ("bias", "model-00002-of-00002.safetensors"),
            ("model.norm.weight", "model-00002-of-00002.safetensors"));

        var ckpt = CheckpointReader.Open(_dir);
        Assert.Equal(new[] { "bias", "ids", "model.layers.0.mlp.down_proj.weight", "model.norm.weight" }, ckpt.Names);
        Assert.Equal(2, ckpt.Files.Count);
        Assert.Equal("1234", ckpt.IndexMetadata!["total_size"]);
        var (dtype, shape) = ckpt.Describe("model.layers.0.mlp.down_proj.weight");
        Assert.Equal(SafeTensorsDType.F32, dtype);
        Assert.Equal(new long[] { 130, 70 }, shape);
        using (var w = ckpt.Load("model.layers.0.mlp.down_proj.weight"))
        using (var expected = Fp8BlockDequant.Dequantize(q, s))
            Assert.True(TensorAssert.Same(w, expected));
        using (var b = ckpt.Load("bias")) Assert.True(TensorAssert.Same(b, bias));
        using (var n = ckpt.Load("model.norm.weight")) Assert.Equal(ScalarType.BFloat16, n.dtype);
        int count = 0;
        foreach (var (_, t) in ckpt.ReadAll()) { count++; t.Dispose(); }
        Assert.Equal(4, count);

        // Without dequantization the scale is a tensor of its own and the weight stays float8.
        var raw = CheckpointReader.Open(Path.Combine(_dir, CheckpointReader.IndexFileName), dequantizeFp8: false);
        Assert.Contains("model.layers.0.mlp.down_proj.weight_scale_inv", raw.Names);
        Assert.Equal(SafeTensorsDType.F8_E4M3, raw.Describe("model.layers.0.mlp.down_proj.weight").DType);
        q.Dispose(); s.Dispose();
    }

    [Fact]
    public void SingleFileFolderAndFileBothOpen()
    {
        using var a = ones(3);
        SafeTensorsWriter.Write(Path.Combine(_dir, CheckpointReader.SingleFileName), [("a", a)]);
        Assert.Equal(new[] { "a" }, CheckpointReader.Open(_dir).Names);
        Assert.Equal(new[] { "a" }, CheckpointReader.Open(Path.Combine(_dir, CheckpointReader.SingleFileName)).Names);
        Assert.Null(CheckpointReader.Open(_dir).IndexMetadata);
    }

    [Fact]
    public void BrokenCheckpointsAreReportedByName()
    {
        using var a = ones(3);
        SafeTensorsWriter.Write(Path.Combine(_dir, "s1.safetensors"), [("a", a)]);
        string Problem() => Assert.Throws<WhaleFormatException>(() => CheckpointReader.Open(_dir)).Message;

        WriteIndex(_dir, ("a", "s1.safetensors"), ("b", "s2.safetensors"));
        Assert.Contains("'s2.safetensors', which does not exist", Problem());
        WriteIndex(_dir, ("a", "s1.safetensors"), ("b", "s1.safetensors"), ("c", "s1.safetensors"));
        Assert.Contains("2 tensor(s) named in weight_map are not in their shard: 'b' (→ s1.safetensors), 'c'", Problem());
        WriteIndex(_dir, ("a", "../s1.safetensors"));
        Assert.Contains("outside the checkpoint folder", Problem());
        WriteIndex(_dir, ("a", "s1.safetensors"), ("a", "s1.safetensors"));
        Assert.Contains("names 'a' twice", Problem());
        File.WriteAllText(Path.Combine(_dir, CheckpointReader.IndexFileName), "{\"metadata\": {}}");
        Assert.Contains("no weight_map", Problem());
        File.WriteAllText(Path.Combine(_dir, CheckpointReader.IndexFileName), "{\"weight_map\": {\"a\": 1}}");
        Assert.Contains("must be a file name string", Problem());
        File.WriteAllText(Path.Combine(_dir, CheckpointReader.IndexFileName), "{\"weight_map\": {\"a\": \"s1.safetensors\"");
        Assert.Contains("not valid JSON", Problem());

        // FP8 weight whose scale has the wrong block grid.
        var g = new Generator(seed: 1);
        using var q = randn(new long[] { 130, 70 }, generator: g).to_type(SafeTensorsDTypes.Float8E4M3);
        using var s = ones(new long[] { 1, 1 });
        SafeTensorsWriter.Write(Path.Combine(_dir, "s1.safetensors"), [("w.weight", q), ("w.weight_scale_inv", s)]);
        WriteIndex(_dir, ("w.weight", "s1.safetensors"), ("w.weight_scale_inv", "s1.safetensors"));
        Assert.Contains("needs a float scale of shape [2, 1]", Problem());

        var empty = Path.Combine(_dir, "empty");
        Directory.CreateDirectory(empty);
        Assert.Contains(CheckpointReader.IndexFileName, Assert.Throws<WhaleArgumentException>(() => CheckpointReader.Open(empty)).Message);
    }

    [Fact]
    public void IndexParserRejectsFuzzedIndexesCleanly()
    {
        var valid = Encoding.UTF8.GetBytes("{\"metadata\":{\"total_size\":10},\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
        var rng = new Random(11);
        for (int i = 0; i < 2000; i++)
        {
            var b = (byte[])valid.Clone();
            if (rng.Next(2) == 0) b = b[..rng.Next(b.Length)];
            for (int k = rng.Next(1, 4); k > 0 && b.Length > 0; k--) b[rng.Next(b.Length)] = (byte)"{}[]\":,ab1 \\"[rng.Next(12)];
            try { CheckpointReader.ParseIndex(b, "index.json"); }
            catch (WhaleFormatException) { }
        }
    }
}
