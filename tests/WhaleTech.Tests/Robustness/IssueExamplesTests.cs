// The bad inputs that used to crash, hang or allocate (a stack trace, a segfault, a huge allocation), each run as a real `whale` process (no dry run) with a time and a peak-memory
// limit: every one must exit 2 within seconds with one line naming the parameter, no stack trace and no large
// allocation. Plus generated config.json and safetensors mutations of a tiny checkpoint, and the help text.
using System.Text;
using System.Text.Json.Nodes;
using WhaleTech.Core;
using WhaleTech.Hub;
using WhaleTech.IO;
using WhaleTech.Model;

namespace WhaleTech.Tests.Robustness;

public class IssueExamplesTests(RobustnessFixture fx) : IClassFixture<RobustnessFixture>
{
    const double Seconds = 30;          // generous for a loaded 2-core machine; typical: < 1 s
    const long Memory = 1L << 30;       // 1 GiB peak RSS

    async Task<WhaleRun> Run(string[] args, Dictionary<string, string>? env = null)
    {
        var cwd = Directory.CreateTempSubdirectory("whale-ex-").FullName;
        return await WhaleProcess.RunAsync(args, cwd, env, Seconds, Memory);
    }

    static void AssertUsageError(WhaleRun r, string mustName)
    {
        Assert.False(r.TimedOut, $"{r.CommandLine} timed out");
        Assert.False(r.OverMemory, $"{r.CommandLine} went over {Memory >> 20} MiB");
        Assert.False(r.HasStackTrace, $"{r.CommandLine} printed a stack trace:\n{r.Stderr}");
        Assert.True(r.ExitCode == 2, $"{r.CommandLine}: exit {r.ExitCode}\n{r.Stdout}\n{r.Stderr}");
        Assert.True(r.ErrorLines.Length == 1, $"{r.CommandLine}: {r.ErrorLines.Length} error lines:\n{r.Stderr}");
        Assert.StartsWith("error: ", r.ErrorLines[0]);
        Assert.Contains(mustName, r.ErrorLines[0]);
    }

    public static TheoryData<string, string[]> Examples => new()
    {
        { "--heads", ["train", "lm", "--heads", "0"] },
        { "--batch", ["train", "lm", "--batch", "100000000"] },
        { "--layers", ["train", "lm", "--layers", "100000"] },
        { "--hidden", ["train", "lm", "--hidden", "16384"] },
        { "--threads", ["grpo", "sft", "--threads", "100000"] },
        { "--iterations", ["mla", "bench", "--iterations", "0"] },
        { "--rows", ["fp8", "lab", "--rows", "1e6", "--cols", "1e6"] },
        { "--rows/--cols", ["fp8", "lab", "--rows", "1000000", "--cols", "1000000"] },
        { "--epsilon-high", ["grpo", "train", "--epsilon", "0.2", "--epsilon-high", "0.1"] },
        { "--numbers", ["grpo", "sft", "--task", "countdown", "--numbers", "7"] },
        { "'nosuch' is not a command of whale", ["nosuch"] },
        { "'nosuch' is not a command of whale grpo", ["grpo", "nosuch"] },
        { "--bessel", ["grpo", "train", "--bessel", "maybe"] },
        { "--max-memory", ["train", "lm", "--max-memory", "lots"] },
        { "must fit in 1 MiB of --max-memory", ["train", "lm", "--max-memory", "1MiB"] },
        { "--model", ["kv", "--model", "/definitely/not/here.json"] },
        { "--out", ["mla", "bench", "--out", "/proc/whale-unwritable/x.json"] },
    };

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task IssueExampleExitsTwoWithOneLine(string mustName, string[] args) => AssertUsageError(await Run(args), mustName);

    [Fact]
    public async Task HeldOutZeroIsRejectedBeforeEvaluating() => AssertUsageError(await Run(["grpo", "eval", "--run", fx.ModelDir, "--held-out", "0"]), "--held-out");

    [Fact]
    public async Task OutThatIsAnExistingFileIsRejectedAtStart()
    {
        AssertUsageError(await Run(["train", "lm", "--out", fx.AnyFile]), "--out");
        AssertUsageError(await Run(["grpo", "sft", "--out", fx.AnyFile]), "--out");
        AssertUsageError(await Run(["tour", "--out", "/proc/whale-unwritable"]), "--out");
    }

    [Fact]
    public async Task ThreadsBeyondTheMachineAreRejected()
    {
        var env = new Dictionary<string, string> { ["WHALETECH_THREADS"] = "100000" };
        AssertUsageError(await Run(["info"], env), "WHALETECH_THREADS");
        AssertUsageError(await Run(["train", "lm", "--steps", "1"], env), "WHALETECH_THREADS");
        AssertUsageError(await Run(["moe", "experiment", "--threads", (Environment.ProcessorCount + 1).ToString()]), "--threads");
    }

    [Fact]
    public async Task AnUnknownFewRowWalkIsRejected()
        => AssertUsageError(await Run(["info"], new Dictionary<string, string> { ["WHALETECH_SMALL_GEMM_FEW_ROWS"] = "tile" }), "WHALETECH_SMALL_GEMM_FEW_ROWS");

    [Fact]
    public async Task IdsWithAnEmptyEntryAreRejected() => AssertUsageError(await Run(["checkpoint", "generate", fx.ModelDir, "--ids", "1,,2"]), "--ids");

    [Fact]
    public async Task TextErrorsAreOneLineAndNeverEchoTheFile()
    {
        var secret = "the secret contents é of a file that must never be printed\nsecond line";
        var path = Path.Combine(fx.Dir, "bad-text.txt");
        File.WriteAllText(path, secret);
        var r = await Run(["train", "lm", "--text", path]);
        AssertUsageError(r, "--text");
        Assert.DoesNotContain("secret", r.Stderr + r.Stdout);
        Assert.Contains("line 1, column 21", r.ErrorLines[0]);
        var bin = Path.Combine(fx.Dir, "bad-bytes.txt");
        File.WriteAllBytes(bin, [0x61, 0xff, 0xfe, 0x62]);
        AssertUsageError(await Run(["train", "lm", "--text", bin]), "--text");
        AssertUsageError(await Run(["train", "lm", "--text", fx.Dir]), "--text");
    }

    // ---- config.json and safetensors mutations ------------------------------------------------------

    string Checkpoint(string name, Func<JsonObject, JsonNode?>? mutateConfig = null, string? rawConfig = null, Action<string>? mutateWeights = null)
    {
        var dir = Path.Combine(fx.Dir, "mut-" + name);
        Directory.CreateDirectory(dir);
        File.Copy(fx.Safetensors, Path.Combine(dir, "model.safetensors"), overwrite: true);
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(fx.ModelDir, "config.json")))!.AsObject();
        string text = rawConfig ?? (mutateConfig is null ? cfg.ToJsonString() : mutateConfig(cfg)?.ToJsonString() ?? "null");
        File.WriteAllText(Path.Combine(dir, "config.json"), text);
        mutateWeights?.Invoke(Path.Combine(dir, "model.safetensors"));
        return dir;
    }

    static JsonNode Set(JsonObject o, string key, JsonNode? value) { o[key] = value; return o; }
    static JsonNode Remove(JsonObject o, string key) { o.Remove(key); return o; }

    public static TheoryData<string, string> ConfigMutations => new()
    {
        { "no-hidden-size", "hidden_size" }, { "no-layers", "num_hidden_layers" }, { "no-heads", "num_attention_heads" }, { "no-vocab", "vocab_size" },
        { "duplicate-key", "hidden_size" }, { "duplicate-nested", "rope_scaling.factor" }, { "llama", "model_type" },
        { "hidden-1e9", "hidden_size" }, { "layers-1e6", "num_hidden_layers" }, { "hidden-string", "hidden_size" }, { "hidden-1e20", "hidden_size" },
        { "hidden-negative", "hidden_size" }, { "heads-zero", "num_attention_heads" }, { "null", "config.json" }, { "empty", "config.json" },
        { "garbage", "config.json" }, { "vocab-1e9", "vocab_size" }, { "experts-1e6", "n_routed_experts" },
    };

    string ConfigCase(string name) => name switch
    {
        "no-hidden-size" => Checkpoint(name, c => Remove(c, "hidden_size")),
        "no-layers" => Checkpoint(name, c => Remove(c, "num_hidden_layers")),
        "no-heads" => Checkpoint(name, c => Remove(c, "num_attention_heads")),
        "no-vocab" => Checkpoint(name, c => Remove(c, "vocab_size")),
        "duplicate-key" => Checkpoint(name, rawConfig: File.ReadAllText(Path.Combine(fx.ModelDir, "config.json")).Replace("\"hidden_size\": 16,", "\"hidden_size\": 16, \"hidden_size\": 32,")),
        "duplicate-nested" => Checkpoint(name, rawConfig: Set(JsonNode.Parse(File.ReadAllText(Path.Combine(fx.ModelDir, "config.json")))!.AsObject(), "rope_scaling",
            JsonNode.Parse("""{"type": "yarn", "factor": 2}""")).ToJsonString().Replace("\"factor\":2", "\"factor\":2,\"factor\":3")),
        "llama" => Checkpoint(name, c => Set(c, "model_type", "llama")),
        "hidden-1e9" => Checkpoint(name, c => Set(c, "hidden_size", 1_000_000_000)),
        "layers-1e6" => Checkpoint(name, c => Set(c, "num_hidden_layers", 1_000_000)),
        "hidden-string" => Checkpoint(name, c => Set(c, "hidden_size", "sixteen")),
        "hidden-1e20" => Checkpoint(name, rawConfig: File.ReadAllText(Path.Combine(fx.ModelDir, "config.json")).Replace("\"hidden_size\": 16", "\"hidden_size\": 100000000000000000000")),
        "hidden-negative" => Checkpoint(name, c => Set(c, "hidden_size", -16)),
        "heads-zero" => Checkpoint(name, c => Set(c, "num_attention_heads", 0)),
        "null" => Checkpoint(name, rawConfig: "null"),
        "empty" => Checkpoint(name, rawConfig: ""),
        "garbage" => Checkpoint(name, rawConfig: "\u0001\u0002{{{"),
        "vocab-1e9" => Checkpoint(name, c => Set(c, "vocab_size", 1_000_000_000)),
        "experts-1e6" => Checkpoint(name, c => { c["n_routed_experts"] = 1_000_000; c["num_experts_per_tok"] = 2; c["moe_intermediate_size"] = 8; return c; }),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(ConfigMutations))]
    public async Task MutatedConfigJsonIsOneClearLine(string name, string field)
    {
        var dir = ConfigCase(name);
        AssertUsageError(await Run(["generate", "--model", dir, "--max-new-tokens", "2"]), field);
        var inspect = await Run(["checkpoint", "inspect", dir]);
        if (name is "hidden-1e9" or "vocab-1e9") Assert.Equal(0, inspect.ExitCode);   // inspect reads headers only: no model of that width is built
        else AssertUsageError(inspect, field);
    }

    public static TheoryData<string> WeightMutations => new() { "truncated", "empty", "huge-header-length", "bad-header-json", "unknown-dtype", "huge-shape", "offsets-out-of-range", "folder" };

    static void MutateHeader(string path, Func<string, string> edit)
    {
        var bytes = File.ReadAllBytes(path);
        long n = BitConverter.ToInt64(bytes, 0);
        var header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        var edited = Encoding.UTF8.GetBytes(edit(header));
        var padded = edited.Concat(Enumerable.Repeat((byte)' ', Math.Max(0, (int)n - edited.Length))).ToArray();
        using var f = File.Create(path);
        f.Write(BitConverter.GetBytes((long)padded.Length));
        f.Write(padded);
        f.Write(bytes, 8 + (int)n, bytes.Length - 8 - (int)n);
    }

    [Theory]
    [MemberData(nameof(WeightMutations))]
    public async Task MutatedSafetensorsIsOneClearLine(string name)
    {
        var dir = Checkpoint("st-" + name, mutateWeights: path =>
        {
            switch (name)
            {
                case "truncated": { var b = File.ReadAllBytes(path); File.WriteAllBytes(path, b[..(b.Length / 2)]); break; }
                case "empty": File.WriteAllBytes(path, []); break;
                case "huge-header-length": { var b = File.ReadAllBytes(path); BitConverter.GetBytes(1L << 60).CopyTo(b, 0); File.WriteAllBytes(path, b); break; }
                case "bad-header-json": MutateHeader(path, h => "{\"a\": [" + h[2..]); break;
                case "unknown-dtype": MutateHeader(path, h => h.Replace("\"F32\"", "\"Q4\"")); break;
                case "huge-shape": MutateHeader(path, h => System.Text.RegularExpressions.Regex.Replace(h, @"""shape"":\[\d+", "\"shape\":[1000000000000")); break;
                case "offsets-out-of-range": MutateHeader(path, h => System.Text.RegularExpressions.Regex.Replace(h, @"""data_offsets"":\[(\d+),(\d+)\]", m => $"\"data_offsets\":[{m.Groups[1].Value},99999999999]")); break;
                case "folder": File.Delete(path); Directory.CreateDirectory(path); break;
            }
        });
        AssertUsageError(await Run(["checkpoint", "inspect", dir]), "model.safetensors");
        AssertUsageError(await Run(["generate", "--model", dir, "--max-new-tokens", "2"]), "model.safetensors");
    }

    // ---- help ------------------------------------------------------------------------------------

    [Fact]
    public async Task HelpShowsRangesDefaultsAndExamples()
    {
        var r = await Run(["grpo", "train", "--help"]);
        Assert.Equal(0, r.ExitCode);
        var help = string.Join(" ", r.Stdout.Split('\n').Select(l => l.Trim()));
        Assert.Contains("--dynamic-sampling false", help);
        Assert.Contains("--bessel false", help);
        Assert.Contains("an integer in [2, 6]", help);           // --numbers: what MathTask accepts
        Assert.Contains("0 = WhaleTech's default", help);          // --threads 0 does not mean libtorch's default
        Assert.Contains("Example:", help);
        Assert.DoesNotContain("(3–4)", help);
    }
}
