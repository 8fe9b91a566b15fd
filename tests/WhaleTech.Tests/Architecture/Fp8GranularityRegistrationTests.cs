// A new FP8 scale granularity is one subclass plus one registration, and the quantizer, fake quantization and
// the FP8 linear's recipe use it without any other edit.
using TorchSharp;
using WhaleTech.Fp8;
using static TorchSharp.torch;

namespace WhaleTech.Tests.Architecture;

/// <summary>Test-only: one scale per column ([1, C]), the transpose of per-row scaling.</summary>
sealed class PerColumnGranularity : Fp8Granularity
{
    public override string Key => "column";
    public override Tensor Amax(Tensor abs2d, int t) => abs2d.amax([0], keepdim: true);                       // [1, C]
    public override Tensor Apply(Tensor x2d, Tensor scales, int t, Func<Tensor, Tensor, Tensor> op) => op(x2d, scales);
}

public class Fp8GranularityRegistrationTests
{
    [Fact]
    public void ANewGranularityIsOneClassAndOneRegistration()
    {
        var column = Fp8Granularities.Register(new PerColumnGranularity());           // the one registration line
        Assert.Same(column, Fp8Granularities.Get("column"));
        Assert.Contains("column", Fp8Granularities.Keys);

        using var scope = NewDisposeScope();
        // Columns with magnitudes spanning 10^6: per-column scales keep each column's relative error at E4M3's
        // half-ulp (2^-4 relative to the top binade), where one per-tensor scale flushes the small columns.
        var x = torch.randn(64, 8, generator: new torch.Generator(5)) * torch.logspace(-3, 3, 8).unsqueeze(0);
        using var q = Fp8Quantizer.Quantize(x, Fp8Format.E4M3, column);
        Assert.Equal(new long[] { 1, 8 }, q.Scales.shape);
        var colAmax = x.abs().amax([0], keepdim: true);
        var relErr = ((q.Dequantize() - x).abs() / colAmax).max().item<float>();
        Assert.True(relErr <= 16.0 / 448 * 1.0001, $"relative error {relErr}");          // half the top-binade spacing (32) over max 448
        var perTensor = (Fp8Quantizer.FakeQuantize(x, Fp8Format.E4M3, Fp8Granularity.PerTensor) - x).abs() / colAmax;
        Assert.True(perTensor.max().item<float>() > 10 * relErr);

        // An FP8 linear whose weights use the new granularity trains like any other recipe.
        var recipe = Fp8Recipe.Register(Fp8Recipe.HybridPerTensor with
        {
            Name = "column-weights",
            Weight = OperandRecipe.Fp8(Fp8Format.E4M3, column),
        });
        Assert.Same(recipe, Fp8Recipe.Parse("recipe", "column-weights"));
        torch.manual_seed(2);
        var lin = new Fp8Linear(8, 4, hasBias: false, recipe);
        var y = lin.forward(torch.randn(3, 8));
        y.sum().backward();
        Assert.Equal(new long[] { 3, 4 }, y.shape);
        Assert.True(lin.weight.grad is not null && lin.weight.grad.isfinite().all().item<bool>());
    }
}

/// <summary>Scaling policies are selected by name in a recipe: delayed scaling (Transformer Engine) uses the amax
/// history of each operand, so a sudden larger activation saturates at the previous amax — current scaling does not.</summary>
public class Fp8ScalingPolicyTests
{
    [Fact]
    public void ADelayedRecipeScalesFromTheAmaxHistoryAndTrains()
    {
        using var scope = NewDisposeScope();
        var recipe = Fp8Recipe.Parse("recipe", "hybrid-tensor-delayed");
        Assert.Equal("delayed", recipe.ScalingPolicy);
        torch.manual_seed(4);
        var delayed = new Fp8Linear(16, 8, hasBias: false, recipe);
        var current = new Fp8Linear(16, 8, hasBias: false, Fp8Recipe.HybridPerTensor);
        using (no_grad()) current.weight.copy_(delayed.weight);
        Assert.NotNull(delayed.Scalers);
        Assert.Null(current.Scalers);

        var x1 = torch.randn(4, 16, generator: new torch.Generator(1));
        // Step 1: empty history → the tensor's own amax, the same numbers as current scaling.
        Assert.True(delayed.forward(x1).eq(current.forward(x1)).all().item<bool>());
        // Step 2: ten times larger input. Delayed: scale from step 1's amax a1, so every |x| is clamped to a1 before the cast
        // (saturating), i.e. x2 behaves like clamp(x2, ±a1); current scaling rescales and keeps x2.
        var x2 = x1 * 10;
        double a1 = x1.abs().max().item<float>();
        var yDelayed = delayed.forward(x2);
        var yExpected = current.forward(x2.clamp(-a1, a1));                  // same FP8 scale a1/448 on clamped values
        Assert.True(yDelayed.allclose(yExpected, rtol: 0, atol: 0), "delayed scaling must saturate at the history's amax");
        Assert.False(yDelayed.allclose(current.forward(x2), rtol: 1e-3, atol: 1e-3));
        // Backward runs on the delayed gradient scaler and gives finite gradients.
        delayed.forward(x1.requires_grad_(true)).sum().backward();
        Assert.True(delayed.weight.grad is not null && delayed.weight.grad.isfinite().all().item<bool>());
        Assert.True(x1.grad is not null && x1.grad.isfinite().all().item<bool>());

        // A delayed recipe with tiles is refused, naming the operand.
        var e = Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => new Fp8Linear(16, 8, false, Fp8Recipe.DeepSeekV3 with { ScalingPolicy = "delayed" }));
        Assert.Equal("activation granularity", e.Parameter);
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => Fp8Recipe.HybridPerTensor with { ScalingPolicy = "psychic" } is var r ? r.Policy() : null);
    }
}
