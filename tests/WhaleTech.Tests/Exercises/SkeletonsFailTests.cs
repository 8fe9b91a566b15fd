// The course exercises (exercises/<name>/: skeleton/, solutions/, tests/) promise two things:
//   1. the tests pass on the solutions — checked by compiling solutions/ + tests/ into this suite (the
//      <Compile Include … LinkBase="Exercises/…"> items of WhaleTech.Tests.csproj);
//   2. EVERY test fails on the untouched skeleton, with NotImplementedException — so a test that is too weak
//      (passes without the student's code) or that trips over something else is caught. Checked here.
//
// Running `dotnet test exercises/<name>` from a test would cost an MSBuild evaluation, a build and a test host per
// exercise (measured on the 2-core CPU: 3–9 s each when up to date, 5–17 s after an edit, 9–30 s when switching
// between skeleton and solutions — a minute or more for four — and nested MSBuild under vstest). Instead this
// compiles skeleton/ + tests/ in process with Roslyn (Microsoft.CodeAnalysis.CSharp, which the CLI's notebook
// runner already ships), against the assemblies this test process can load (the framework, TorchSharp, WhaleTech,
// xunit), loads the result into a collectible AssemblyLoadContext and runs every [Fact] and every data row of
// every [Theory] by reflection — what the xunit runner would do, minus its process (about 2 s for all four).
// The same runner is checked to PASS every test on the solutions, so a failure count of "all" cannot come from
// the runner itself. Nothing here builds a skeleton into WhaleTech.sln.
using System.Reflection;
using System.Runtime.Loader;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Xunit.Sdk;

namespace WhaleTech.Tests.Exercises;

public class SkeletonsFailTests
{
    public static readonly string[] Exercises = ["grpo", "mla", "moe", "fp8"];

    [Fact]
    public void EveryExerciseFolderIsCheckedAndNoneIsInTheSolution()
    {
        var root = RepoRoot();
        var folders = Directory.GetDirectories(Path.Combine(root, "exercises"))
            .Where(d => Directory.GetFiles(d, "*.csproj").Length > 0).Select(Path.GetFileName).Order().ToArray();
        Assert.Equal(Exercises.Order().ToArray(), folders);
        var sln = File.ReadAllText(Path.Combine(root, "WhaleTech.sln"));
        Assert.DoesNotContain("exercises", sln, StringComparison.OrdinalIgnoreCase);       // a failing skeleton never breaks the build
        var testsProject = File.ReadAllText(Path.Combine(root, "tests", "WhaleTech.Tests", "WhaleTech.Tests.csproj"));
        foreach (var name in Exercises)
        {
            Assert.Contains($"../../exercises/{name}/solutions/*.cs;../../exercises/{name}/tests/*.cs", testsProject);
            Assert.True(File.Exists(Path.Combine(root, "exercises", name, "README.md")), $"exercises/{name}/README.md");
        }
        foreach (var line in testsProject.Split('\n').Where(l => l.Contains("<Compile", StringComparison.Ordinal)))
            Assert.DoesNotContain("skeleton", line, StringComparison.OrdinalIgnoreCase);                 // skeletons are never built
    }

    [Theory]
    [InlineData("grpo")]
    [InlineData("mla")]
    [InlineData("moe")]
    [InlineData("fp8")]
    public void EveryTestFailsOnTheSkeleton(string exercise)
    {
        var results = CompileAndRun(exercise, "skeleton");
        Assert.NotEmpty(results);
        var wrong = results.Where(r => r.Error is not NotImplementedException).ToList();
        Assert.True(wrong.Count == 0,
            $"{wrong.Count} of {results.Count} {exercise} tests do not fail with NotImplementedException on the skeleton:\n" +
            string.Join("\n", wrong.Select(r => $"  {r.Name}: {(r.Error is null ? "PASSED" : r.Error.GetType().Name + ": " + r.Error.Message)}")));
    }

    [Theory]
    [InlineData("grpo")]
    [InlineData("mla")]
    [InlineData("moe")]
    [InlineData("fp8")]
    public void TheSameRunnerPassesEveryTestOnTheSolutions(string exercise)
    {
        var results = CompileAndRun(exercise, "solutions");
        Assert.NotEmpty(results);
        var failed = results.Where(r => r.Error is not null).ToList();
        Assert.True(failed.Count == 0, string.Join("\n", failed.Select(r => $"  {r.Name}: {r.Error!.GetType().Name}: {r.Error.Message}")));
    }

    public sealed record TestResult(string Name, Exception? Error);

    /// <summary>Compiles exercises/<paramref name="exercise"/>/<paramref name="variant"/>/*.cs + tests/*.cs and runs every test case.</summary>
    static List<TestResult> CompileAndRun(string exercise, string variant)
    {
        var dir = Path.Combine(RepoRoot(), "exercises", exercise);
        var files = Directory.GetFiles(Path.Combine(dir, variant), "*.cs").Concat(Directory.GetFiles(Path.Combine(dir, "tests"), "*.cs")).Order();
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        var trees = files.Select(f => CSharpSyntaxTree.ParseText(File.ReadAllText(f), parse, f))
            .Append(CSharpSyntaxTree.ParseText(ImplicitUsings, parse, "ImplicitUsings.cs"));
        var compilation = CSharpCompilation.Create($"{exercise}-{variant}-{Guid.NewGuid():N}", trees, References.Value,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        using var image = new MemoryStream();
        var emit = compilation.Emit(image);
        var errors = emit.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
        Assert.True(emit.Success, $"exercises/{exercise} {variant} + tests do not compile:\n" + string.Join("\n", errors.Take(20)));
        image.Position = 0;
        var context = new AssemblyLoadContext($"{exercise}-{variant}", isCollectible: true);
        try
        {
            return RunAll(context.LoadFromStream(image));
        }
        finally { context.Unload(); }
    }

    /// <summary>Every [Fact] and every data row of every [Theory] in the public classes of <paramref name="assembly"/>,
    /// each on a fresh instance of its class (as xunit does).</summary>
    static List<TestResult> RunAll(Assembly assembly)
    {
        var results = new List<TestResult>();
        foreach (var type in assembly.GetExportedTypes().Where(t => t.IsClass && !t.IsAbstract))
            foreach (var method in type.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static))
            {
                var fact = method.GetCustomAttribute<FactAttribute>();
                if (fact is null) continue;
                Assert.True(fact.Skip is null, $"{method.Name} is skipped: an exercise test must run");
                var rows = fact is TheoryAttribute
                    ? method.GetCustomAttributes<DataAttribute>().SelectMany(d => d.GetData(method)).ToList()
                    : [Array.Empty<object?>()];
                Assert.True(rows.Count > 0, $"{type.Name}.{method.Name}: a theory without data");
                foreach (var row in rows)
                {
                    string name = $"{type.Name}.{method.Name}" + (row.Length > 0 ? $"({string.Join(", ", row)})" : "");
                    results.Add(new TestResult(name, Invoke(type, method, row)));
                }
            }
        return results;
    }

    static Exception? Invoke(Type type, MethodInfo method, object?[] row)
    {
        object? instance = null;
        try
        {
            instance = method.IsStatic ? null : Activator.CreateInstance(type);
            var args = row.Zip(method.GetParameters(), (value, p) => value is null || p.ParameterType.IsInstanceOfType(value)
                ? value : Convert.ChangeType(value, Nullable.GetUnderlyingType(p.ParameterType) ?? p.ParameterType, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            var returned = method.Invoke(instance, args);
            if (returned is Task task) task.GetAwaiter().GetResult();
            return null;
        }
        catch (TargetInvocationException e) { return e.InnerException ?? e; }
        catch (Exception e) { return e; }
        finally { (instance as IDisposable)?.Dispose(); }
    }

    // What <ImplicitUsings>enable</ImplicitUsings> and <Using Include="Xunit" /> give the exercise projects.
    const string ImplicitUsings = """
        global using System;
        global using System.Collections.Generic;
        global using System.IO;
        global using System.Linq;
        global using System.Threading;
        global using System.Threading.Tasks;
        global using Xunit;
        """;

    /// <summary>Every assembly this test process may load (the trusted platform assemblies: the framework, TorchSharp,
    /// the WhaleTech libraries however they are split, xunit) except this test assembly, which holds the solutions'
    /// types under the same names.</summary>
    static readonly Lazy<MetadataReference[]> References = new(() =>
    {
        var self = Path.GetFullPath(typeof(SkeletonsFailTests).Assembly.Location);
        return ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Where(p => p.Length > 0 && Path.GetFullPath(p) != self).Distinct()
            .Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)).ToArray();
    });

    static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "WhaleTech.sln"))) return d.FullName;
        throw new InvalidOperationException("WhaleTech.sln not found above " + AppContext.BaseDirectory);
    }
}
