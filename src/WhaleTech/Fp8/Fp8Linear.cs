// Fp8Linear: a drop-in nn.Linear whose Fprop, Dgrad and Wgrad run on FP8-simulated operands
// (Fp8LinearFunction), with float32 master weights registered as `weight` [out, in] and `bias` [out],
// so Hugging Face names and optimizers work unchanged. DeepSeek-V3 §3.3: FP8 for the linears of
// attention and MoE; high-precision "islands" for the embedding, output head, MoE router (gate), norms
// and the attention core (softmax), which are not linears or are kept as plain nn.Linear by the factory.
//
// Model-level switch: build the model with Fp8Linears.Factory(recipe, …); SetRecipe(model, recipe)
// later changes the recipe of every Fp8Linear in it (e.g. BF16 warm-up, then FP8).
//
// Shapes: x [*, K] → y [*, M]; K = in features, M = out features.
using TorchSharp;
using TorchSharp.Modules;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Fp8;

public sealed class Fp8Linear : nn.Module<Tensor, Tensor>
{
    public Parameter weight;                                               // [M, K] float32 master
    public Parameter? bias;                                                // [M]

    public Fp8Linear(long inFeatures, long outFeatures, bool hasBias, Fp8Recipe recipe, double initStd = 0.02) : base(nameof(Fp8Linear))
    {
        InFeatures = Guard.Positive("inFeatures", inFeatures);
        OutFeatures = Guard.Positive("outFeatures", outFeatures);
        Recipe = recipe;
        weight = new Parameter(torch.randn(outFeatures, inFeatures) * initStd);
        bias = hasBias ? new Parameter(torch.zeros(outFeatures)) : null;
        RegisterComponents();
    }

    public long InFeatures { get; }
    public long OutFeatures { get; }

    /// <summary>The recipe of the three GEMMs; may be changed between steps (a new scaling policy starts fresh state).</summary>
    public Fp8Recipe Recipe
    {
        get => _recipe;
        set
        {
            var policy = value.Policy();                                   // validates the policy against the operands
            Scalers = policy.Stateless ? null : Scalers?.Policy == policy ? Scalers : new Fp8LinearScalers(policy);
            _recipe = value;
        }
    }
    Fp8Recipe _recipe = null!;

    /// <summary>The per-operand scaling state of a stateful policy (delayed scaling's amax histories), else null.</summary>
    public Fp8LinearScalers? Scalers { get; private set; }

    public override Tensor forward(Tensor x)
    {
        if (x.shape.Length == 0 || x.shape[^1] != InFeatures)
            throw new WhaleArgumentException("x.shape", x.shape, $"must end in in_features = {InFeatures}");
        var lead = x.shape[..^1];
        var x2 = x.reshape(-1, InFeatures);                                // [N, K]
        var y = Fp8LinearFunction.Apply(x2, weight, bias, Recipe, Scalers); // [N, M]
        return y.reshape([.. lead, OutFeatures]);                          // [*, M]
    }
}

public static class Fp8Linears
{
    /// <summary>DeepSeek-V3's high-precision islands among linears, by HF name: the output head
    /// (lm_head), anything under an embedding, the MoE router (`mlp.gate`, not `gate_proj`) and norms.</summary>
    public static bool DefaultHighPrecision(string name)
    {
        var n = name.ToLowerInvariant();
        return n.Contains("lm_head") || n.Contains("embed") || n.Contains("norm") || n == "gate" || n.EndsWith(".gate", StringComparison.Ordinal);
    }

    /// <summary>A LinearFactory that makes Fp8Linear layers with <paramref name="recipe"/>, except for the
    /// names <paramref name="keepHighPrecision"/> selects (default: <see cref="DefaultHighPrecision"/>),
    /// which become plain float32 nn.Linear.</summary>
    public static LinearFactory Factory(Fp8Recipe recipe, Func<string, bool>? keepHighPrecision = null, double initStd = 0.02)
    {
        keepHighPrecision ??= DefaultHighPrecision;
        var standard = Linears.Standard(initStd);
        return (inF, outF, hasBias, name) => keepHighPrecision(name)
            ? standard(inF, outF, hasBias, name)
            : new Fp8Linear(inF, outF, hasBias, recipe, initStd);
    }

    /// <summary>Sets the recipe of every Fp8Linear inside <paramref name="model"/>; returns how many.</summary>
    public static int SetRecipe(nn.Module model, Fp8Recipe recipe)
    {
        int n = 0;
        foreach (var (_, m) in model.named_modules())
            if (m is Fp8Linear f) { f.Recipe = recipe; n++; }
        if (model is Fp8Linear self && !model.named_modules().Any(p => ReferenceEquals(p.module, self))) { self.Recipe = recipe; n++; }
        return n;
    }
}
