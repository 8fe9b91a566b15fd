// The core library's layers (docs/architecture.md), checked on the compiled assembly: every type a namespace
// uses — in signatures, fields, base types and inside method bodies (read from the IL) — must come from a
// strictly lower layer, so there are no namespace cycles and no edge pointing up or sideways. And the core
// references TorchSharp only (plots, statistics and console UI live in WhaleTech.Lab and the programs).
using System.Reflection;
using System.Reflection.Emit;
using WhaleTech.Core;

namespace WhaleTech.Tests.Architecture;

public class LayerTests
{
    /// <summary>The documented order, bottom (0) up. A namespace may use only namespaces of a lower rank.</summary>
    public static readonly IReadOnlyDictionary<string, int> Rank = new Dictionary<string, int>
    {
        ["WhaleTech.Runtime"] = 0,
        ["WhaleTech.IO"] = 1,
        ["WhaleTech.Core"] = 2,
        ["WhaleTech.Attention"] = 3, ["WhaleTech.Moe"] = 3, ["WhaleTech.Fp8"] = 3,
        ["WhaleTech.Model"] = 4,
        ["WhaleTech.Training"] = 5, ["WhaleTech.Hub"] = 5,
        ["WhaleTech.Grpo"] = 6,
    };

    static readonly Assembly Core = typeof(ModelConfig).Assembly;

    [Fact]
    public void EveryNamespaceOfTheCoreHasALayer()
    {
        var namespaces = Core.GetTypes().Select(t => t.Namespace).Where(n => n is not null && n.StartsWith("WhaleTech")).Distinct().ToList();
        Assert.DoesNotContain(namespaces, n => !Rank.ContainsKey(n!));
        Assert.Equal(Rank.Count, namespaces.Count);   // and no layer is documented that does not exist
    }

    [Fact]
    public void NamespacesOnlyUseLowerLayers()
    {
        var edges = NamespaceEdges(Core);
        Assert.NotEmpty(edges);
        var bad = edges.Where(e => !(Rank[e.Key.To] < Rank[e.Key.From]))
                       .Select(e => $"{e.Key.From} (layer {Rank[e.Key.From]}) → {e.Key.To} (layer {Rank[e.Key.To]}) via {string.Join(", ", e.Value.Take(3))}")
                       .ToList();
        Assert.True(bad.Count == 0, "edges against the layer order:\n" + string.Join("\n", bad));
        // The scan sees method bodies, not just signatures: Model builds MLA inside DecoderBlock's constructor.
        Assert.Contains(("WhaleTech.Model", "WhaleTech.Attention"), edges.Keys);
        Assert.Contains(("WhaleTech.Model", "WhaleTech.Moe"), edges.Keys);
    }

    [Fact]
    public void TheCoreReferencesTorchSharpOnly()
    {
        var refs = Core.GetReferencedAssemblies().Select(a => a.Name!).ToList();
        Assert.Contains("TorchSharp", refs);
        var others = refs.Where(n => n != "TorchSharp" && n != "netstandard" && !n.StartsWith("System") && !n.StartsWith("Microsoft.Win32")).ToList();
        Assert.True(others.Count == 0, "the core library references " + string.Join(", ", others));
    }

    [Fact]
    public void NothingInTheCoreReferencesTheLab()
    {
        Assert.DoesNotContain(Core.GetReferencedAssemblies(), a => a.Name == "WhaleTech.Lab");
        var lab = typeof(WhaleTech.Lab.Bench.BenchmarkResult).Assembly;
        Assert.Contains(lab.GetReferencedAssemblies(), a => a.Name == Core.GetName().Name);
    }

    // ---- the scan ------------------------------------------------------------------------------------------

    /// <summary>(from namespace, to namespace) → a few member names that make the edge, for the message.</summary>
    public static Dictionary<(string From, string To), List<string>> NamespaceEdges(Assembly assembly)
    {
        var edges = new Dictionary<(string, string), List<string>>();
        foreach (var type in assembly.GetTypes())
        {
            var from = OuterNamespace(type);
            if (from is null || !Rank.ContainsKey(from)) continue;
            foreach (var (used, where) in UsedTypes(type))
            {
                if (used.Assembly != assembly) continue;
                var to = OuterNamespace(used);
                if (to is null || to == from || !Rank.ContainsKey(to)) continue;
                if (!edges.TryGetValue((from, to), out var list)) edges[(from, to)] = list = [];
                if (list.Count < 5) list.Add($"{type.Name}.{where} uses {used.Name}");
            }
        }
        return edges;
    }

    static string? OuterNamespace(Type t)
    {
        while (t.DeclaringType is not null) t = t.DeclaringType;
        return t.Namespace;
    }

    const BindingFlags All = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    static IEnumerable<(Type Used, string Where)> UsedTypes(Type type)
    {
        if (type.BaseType is { } b) foreach (var t in Expand(b)) yield return (t, "base");
        foreach (var i in type.GetInterfaces()) foreach (var t in Expand(i)) yield return (t, "interface");
        foreach (var f in type.GetFields(All)) foreach (var t in Expand(f.FieldType)) yield return (t, f.Name);
        foreach (var p in type.GetProperties(All)) foreach (var t in Expand(p.PropertyType)) yield return (t, p.Name);
        foreach (var m in type.GetMethods(All).Cast<MethodBase>().Concat(type.GetConstructors(All)))
        {
            var sig = m is MethodInfo mi ? [mi.ReturnType, .. m.GetParameters().Select(p => p.ParameterType)] : m.GetParameters().Select(p => p.ParameterType).ToArray();
            foreach (var s in sig) foreach (var t in Expand(s)) yield return (t, m.Name);
            foreach (var t in BodyTypes(m)) yield return (t, m.Name);
        }
    }

    /// <summary>A type with its element type and generic arguments.</summary>
    static IEnumerable<Type> Expand(Type t)
    {
        if (t.IsGenericParameter) yield break;
        if (t.HasElementType) { foreach (var e in Expand(t.GetElementType()!)) yield return e; yield break; }
        yield return t.IsGenericType ? t.GetGenericTypeDefinition() : t;
        if (t.IsGenericType) foreach (var a in t.GetGenericArguments()) foreach (var e in Expand(a)) yield return e;
    }

    static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);

    /// <summary>Types named by the IL of a method body: the types of the methods called, fields touched,
    /// objects created, casts and type tokens.</summary>
    static IEnumerable<Type> BodyTypes(MethodBase method)
    {
        byte[]? il;
        try { il = method.GetMethodBody()?.GetILAsByteArray(); } catch (InvalidOperationException) { il = null; }
        if (il is null) yield break;
        var typeArgs = method.DeclaringType is { IsGenericType: true } dt ? dt.GetGenericArguments() : null;
        var methodArgs = method.IsGenericMethod ? method.GetGenericArguments() : null;
        int i = 0;
        while (i < il.Length)
        {
            short value = il[i] == 0xFE ? (short)(0xFE00 | il[i + 1]) : il[i];
            i += il[i] == 0xFE ? 2 : 1;
            var op = OpCodesByValue[value];
            int size = op.OperandType switch
            {
                OperandType.InlineNone => 0,
                OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                OperandType.InlineVar => 2,
                OperandType.InlineI8 or OperandType.InlineR => 8,
                OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, i),
                _ => 4,
            };
            if (op.OperandType is OperandType.InlineMethod or OperandType.InlineField or OperandType.InlineType or OperandType.InlineTok)
            {
                MemberInfo? member = null;
                try { member = method.Module.ResolveMember(BitConverter.ToInt32(il, i), typeArgs, methodArgs); }
                catch (ArgumentException) { }
                catch (BadImageFormatException) { }
                foreach (var t in MemberTypes(member)) yield return t;
            }
            i += size;
        }
    }

    static IEnumerable<Type> MemberTypes(MemberInfo? member)
    {
        switch (member)
        {
            case Type t: foreach (var e in Expand(t)) yield return e; break;
            case FieldInfo f:
                foreach (var e in Expand(f.DeclaringType!)) yield return e;
                foreach (var e in Expand(f.FieldType)) yield return e;
                break;
            case MethodBase m:
                foreach (var e in Expand(m.DeclaringType!)) yield return e;
                if (m is MethodInfo { IsGenericMethod: true } g) foreach (var a in g.GetGenericArguments()) foreach (var e in Expand(a)) yield return e;
                break;
        }
    }
}
