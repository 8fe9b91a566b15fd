using TorchSharp;
using TorchSharp.Modules;
using WhaleTech.Hub;
using WhaleTech.IO;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Tests.IO;

public class StateDictTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "whaletech-sd-" + Guid.NewGuid().ToString("N")[..8]);

    public StateDictTests() { Backend.Initialize(); Directory.CreateDirectory(_dir); }
    public void Dispose() => Directory.Delete(_dir, true);

    sealed class Inner : nn.Module<Tensor, Tensor>
    {
        public Embedding embed_tokens;
        public Parameter norm;
        public Inner(int vocab, int dim, ScalarType dtype) : base("Inner")
        {
            embed_tokens = nn.Embedding(vocab, dim, dtype: dtype);
            norm = nn.Parameter(rand(dim, dtype: dtype));
            register_buffer("steps", tensor(new long[] { 7, 8 }));                     // persistent: saved
            register_buffer("cache", zeros(dim), persistent: false);                   // not saved
            RegisterComponents();
        }
        public override Tensor forward(Tensor ids) => embed_tokens.forward(ids) * norm;
    }

    sealed class Lm : nn.Module<Tensor, Tensor>
    {
        public Inner model;
        public Linear lm_head;
        public Lm(int vocab = 11, int dim = 6, ScalarType dtype = ScalarType.Float32, bool head = true) : base("Lm")
        {
            model = new Inner(vocab, dim, dtype);
            lm_head = nn.Linear(dim, head ? vocab : vocab + 1, hasBias: false, dtype: dtype);
            RegisterComponents();
        }
        public override Tensor forward(Tensor ids) => lm_head.forward(model.forward(ids));
    }

    [Fact]
    public void SavedModelLoadsBackWithIdenticalOutputs()
    {
        manual_seed(1);
        using var a = new Lm();
        var path = Path.Combine(_dir, "model.safetensors");
        StateDict.Save(a, path);
        var f = SafeTensorsFile.Open(path);
        Assert.Equal(new[] { "lm_head.weight", "model.embed_tokens.weight", "model.norm", "model.steps" }, f.Names.Order(StringComparer.Ordinal));
        Assert.Equal("pt", f.Metadata!["format"]);

        manual_seed(2);
        using var b = new Lm();
        Assert.False(TensorAssert.Same(a.lm_head.weight!, b.lm_head.weight!));
        var report = StateDict.Load(b, path);
        Assert.True(report.IsExact);
        Assert.Equal(4, report.Loaded.Count);
        using var ids = tensor(new long[] { 1, 5, 10 });
        using var ya = a.forward(ids);
        using var yb = b.forward(ids);
        Assert.True(TensorAssert.Same(ya, yb));
    }

    [Fact]
    public void SavePretrainedWritesConfigAndWeights()
    {
        using var a = new Lm();
        StateDict.SavePretrained(a, ModelConfig.Tiny().ToJson(), _dir);
        Assert.Equal(ModelConfig.Tiny().HiddenSize, ModelConfig.Load(Path.Combine(_dir, "config.json")).HiddenSize);
        using var b = new Lm();
        Assert.True(StateDict.Load(b, _dir).IsExact);
        Assert.True(TensorAssert.Same(a.lm_head.weight!, b.lm_head.weight!));
    }

    [Fact]
    public void StrictLoadNamesEveryProblemAndChangesNothing()
    {
        using var a = new Lm();
        var path = Path.Combine(_dir, "a.safetensors");
        using var extra = ones(2);
        SafeTensorsWriter.Write(path, StateDict.Entries(a).Where(e => e.Name != "model.norm").Append(("rotary.inv_freq", extra)).Append(("zz", extra)));

        using var b = new Lm();
        using var before = b.model.embed_tokens.weight!.clone();
        var e = Assert.Throws<WhaleFormatException>(() => StateDict.Load(b, path));
        Assert.Contains("missing 1: model.norm", e.Message);
        Assert.Contains("unexpected 2: rotary.inv_freq, zz", e.Message);
        Assert.True(TensorAssert.Same(b.model.embed_tokens.weight!, before));

        // Lenient: present names load, the rest is reported.
        var report = StateDict.Load(b, path, strict: false);
        Assert.Equal(new[] { "model.norm" }, report.Missing);
        Assert.Equal(new[] { "rotary.inv_freq", "zz" }, report.Unexpected);
        Assert.True(TensorAssert.Same(b.model.embed_tokens.weight!, a.model.embed_tokens.weight!));
    }

    [Fact]
    public void ShapeAndDtypeMismatchesAreErrorsInBothModes()
    {
        using var a = new Lm();
        var path = Path.Combine(_dir, "a.safetensors");
        StateDict.Save(a, path);
        using var wider = new Lm(head: false);
        var e = Assert.Throws<WhaleFormatException>(() => StateDict.Load(wider, path, strict: false));
        Assert.Contains("'lm_head.weight' has shape [11, 6] in the file but [12, 6] in the model", e.Message);

        using var wrongType = new Lm();
        var dict = StateDict.Entries(a).ToDictionary(x => x.Name, x => x.Tensor);
        using var floatSteps = dict["model.steps"].to_type(ScalarType.Float32);
        dict["model.steps"] = floatSteps;
        Assert.Contains("'model.steps' is F32 in the file but I64 in the model",
            Assert.Throws<WhaleFormatException>(() => StateDict.Load(wrongType, dict)).Message);
    }

    [Fact]
    public void FloatWeightsConvertToTheModelsPrecisionAndPrefixesApply()
    {
        using var a = new Lm();
        var path = Path.Combine(_dir, "p.safetensors");
        StateDict.Save(a, path, prefix: "base.");
        Assert.All(SafeTensorsFile.Open(path).Names, n => Assert.StartsWith("base.", n));
        using var half = new Lm(dtype: ScalarType.BFloat16);
        Assert.True(StateDict.Load(half, path, prefix: "base.").IsExact);
        using var expected = a.lm_head.weight!.to_type(ScalarType.BFloat16);
        Assert.True(TensorAssert.Same(half.lm_head.weight!, expected));
    }
}
