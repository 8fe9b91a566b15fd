using WhaleTech.Core;
using WhaleTech.Fp8;
using WhaleTech.Grpo;
using WhaleTech.Runtime;

namespace WhaleTech.Tests.Runtime;

/// <summary>The one registry behind every plug point: order, duplicate rules, case rules, the unknown-name error,
/// concurrent use; and the lookups each built-in registry kept when it moved onto it.</summary>
public class NamedRegistryTests
{
    sealed record Item(string Label);

    static NamedRegistry<Item> Make(StringComparer comparer, DuplicateName duplicates, Func<string, string>? key = null)
        => new(comparer, duplicates, key, initial: [("b", new Item("b1")), ("a", new Item("a1")), ("c", new Item("c1"))]);

    [Fact]
    public void NamesAndItemsAreInRegistrationOrder()
    {
        var r = Make(StringComparer.Ordinal, DuplicateName.ReplaceInPlace);
        r.Register("d", new Item("d1"));
        Assert.Equal(["b", "a", "c", "d"], r.Names);
        Assert.Equal(["b1", "a1", "c1", "d1"], r.Items.Select(i => i.Label));
    }

    [Fact]
    public void ADuplicateReplacesInPlaceMovesLastOrThrows()
    {
        var inPlace = Make(StringComparer.Ordinal, DuplicateName.ReplaceInPlace);
        inPlace.Register("b", new Item("b2"));
        Assert.Equal(["b", "a", "c"], inPlace.Names);
        Assert.Equal("b2", inPlace.Get("b", "p").Label);

        var moved = Make(StringComparer.Ordinal, DuplicateName.ReplaceAndMoveLast);
        moved.Register("b", new Item("b2"));
        Assert.Equal(["a", "c", "b"], moved.Names);
        Assert.Equal("b2", moved.Get("b", "p").Label);

        var once = Make(StringComparer.Ordinal, DuplicateName.Throw);
        Assert.Throws<ArgumentException>(() => once.Register("b", new Item("b2")));
        Assert.Equal("b1", once.Get("b", "p").Label);
        Assert.Throws<ArgumentException>(() => new NamedRegistry<Item>(StringComparer.Ordinal, DuplicateName.Throw, initial: [("x", new Item("1")), ("x", new Item("2"))]));
    }

    [Fact]
    public void CaseAndKeyRulesAreTheRegistrysOwn()
    {
        var exact = Make(StringComparer.Ordinal, DuplicateName.ReplaceAndMoveLast);
        Assert.True(exact.Contains("a"));
        Assert.False(exact.Contains("A"));
        Assert.False(exact.Contains(" a"));
        Assert.False(exact.Contains(null));
        exact.Register("A", new Item("A1"));                 // another name under Ordinal
        Assert.Equal(["b", "a", "c", "A"], exact.Names);

        var loose = Make(StringComparer.OrdinalIgnoreCase, DuplicateName.ReplaceInPlace, key: n => n.Trim());
        Assert.Equal("a1", loose.Get("  A ", "p").Label);
        loose.Register("A", new Item("a2"));                 // the same name: replaced, first spelling kept
        Assert.Equal(["b", "a", "c"], loose.Names);
        Assert.Equal("a2", loose.Get("a", "p").Label);

        Assert.Equal("c1", exact.Find((name, item) => item.Label.StartsWith('c'))!.Label);
        Assert.Null(exact.Find((_, _) => false));
    }

    [Fact]
    public void AnUnknownNameNamesTheParameterTheValueAndTheRegisteredNames()
    {
        var r = Make(StringComparer.Ordinal, DuplicateName.ReplaceInPlace);
        var e = Assert.Throws<WhaleArgumentException>(() => r.Get("zz", "--thing"));
        Assert.Equal("--thing", e.Parameter);
        Assert.Equal("'zz'", e.Value);
        Assert.Equal("must be one of b, a, c", e.Allowed);
        Assert.Equal("--thing = 'zz' is not allowed: must be one of b, a, c.", e.Message);
        Assert.Equal("null", Assert.Throws<WhaleArgumentException>(() => r.Get(null, "p")).Value);
        Assert.Throws<ArgumentNullException>(() => r.Register(null!, new Item("x")));
        Assert.Throws<ArgumentNullException>(() => r.Register("x", null!));
    }

    [Fact]
    public void RegistersAndLooksUpFromManyThreads()
    {
        var r = new NamedRegistry<Item>(StringComparer.Ordinal, DuplicateName.ReplaceAndMoveLast);
        Parallel.For(0, 2000, i =>
        {
            r.Register($"n{i % 100}", new Item(i.ToString()));
            _ = r.Names.Count;
            r.TryGet($"n{(i * 7) % 100}", out _);
        });
        Assert.Equal(100, r.Names.Count);
        Assert.Equal(100, r.Names.Distinct().Count());
    }

    [Fact]
    public void AGranularityRegisteredBeforeAnyBuiltInIsUsedStillComesAfterTheBuiltInFour()
    {
        // In a fresh copy of the library nothing has touched Fp8Granularity yet, so its static initializer (which
        // registers the built-in four) has not run. Registering first must not put the newcomer ahead of them: a
        // test-order-dependent CI failure once showed ["column", "tensor", "row", "tile"]. A built-in class stands
        // in for the user's (a new key would need a subclass compiled against that copy); replacing in place
        // keeps the built-in order.
        var context = new System.Runtime.Loader.AssemblyLoadContext("fresh-whaletech", isCollectible: true);
        try
        {
            var fresh = context.LoadFromAssemblyPath(typeof(Fp8Granularities).Assembly.Location);
            var registry = fresh.GetType(typeof(Fp8Granularities).FullName!)!;
            var blockType = fresh.GetType(typeof(Fp8Granularity).FullName! + "+BlockGranularity", throwOnError: true)!;
            var block = Activator.CreateInstance(blockType, nonPublic: true)!;
            registry.GetMethod(nameof(Fp8Granularities.Register))!.Invoke(null, [block]);
            var keys = (IReadOnlyList<string>)registry.GetProperty(nameof(Fp8Granularities.Keys))!.GetValue(null)!;
            Assert.Equal(["tensor", "row", "tile", "block"], keys);
        }
        finally { context.Unload(); }
    }

    [Fact]
    public void TheBuiltInRegistriesKeepTheirLookupRules()
    {
        // Attention, granularities, recipes: case-insensitive and trimmed.
        Assert.Same(AttentionVariants.Get("mla"), AttentionVariants.Get(" MLA "));
        Assert.Equal("whaletech_attention", Assert.Throws<WhaleArgumentException>(() => AttentionVariants.Get("nope")).Parameter);
        Assert.Same(Fp8Granularity.Tile, Fp8Granularities.Get(" TILE "));
        Assert.Same(Fp8Granularity.Tile, Fp8Granularities.Get("1x128"));         // also by table name
        Assert.Same(Fp8Granularity.Block, Fp8Granularities.Get("128X128"));
        Assert.Equal(["tensor", "row", "tile", "block"], Fp8Granularities.Keys.Take(4));
        Assert.Same(Fp8Recipe.DeepSeekV3, Fp8Recipe.Parse("--recipe", " DeepSeek-V3 "));
        Assert.Contains("must be one of deepseek-v3, deepseek-v3-real", Assert.Throws<WhaleArgumentException>(() => Fp8Recipe.Parse("--recipe", "x")).Message);
        // Scaling policies: lower-cased and trimmed before an exact match.
        Assert.Equal("delayed", Fp8ScalingPolicies.Get(" Delayed ").Name);
        Assert.Equal("scaling_policy", Assert.Throws<WhaleArgumentException>(() => Fp8ScalingPolicies.Get("later")).Parameter);
        // Tasks and rewards: exact names.
        Assert.Equal("task", Assert.Throws<WhaleArgumentException>(() => GrpoTasks.Create("Addition", new TaskKnobs())).Parameter);
        Assert.Contains("reward functions are accuracy, format, partial", Assert.Throws<WhaleArgumentException>(() => Rewards.Parse("Accuracy:1", GrpoTasks.Create("addition", new TaskKnobs()))).Message);
        // Loss aggregations: '-' or no '_' also name dr_grpo.
        Assert.Same(LossAggregators.Get("dr_grpo"), LossAggregators.Get(" DR-GRPO "));
        Assert.Same(LossAggregators.Get("dr_grpo"), LossAggregators.Get("drgrpo"));
        Assert.Contains("must be one of grpo, bnpo, dapo, dr_grpo", Assert.Throws<WhaleArgumentException>(() => LossAggregators.Get("x")).Message);
    }
}
