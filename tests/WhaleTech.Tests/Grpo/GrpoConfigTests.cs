using System.Text.Json.Nodes;
using WhaleTech.Cli;
using WhaleTech.Grpo;
using WhaleTech.Runtime;

namespace WhaleTech.Tests.Grpo;

/// <summary>`whale grpo train --config`: the resolved configuration a run writes (options.json, every default
/// included) repeats the run; flags override the file only when given.</summary>
public sealed class GrpoConfigTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "whale-grpo-config-" + Guid.NewGuid().ToString("N"));
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    static int Whale(params string[] args) => WhaleTech.Cli.Cli.Run(WhaleCommands.Root(), args);

    static readonly string[] Tiny =
    [
        "--task", "addition", "--digits", "1", "--hidden", "32", "--layers", "1", "--heads", "2", "--sft-steps", "40",
        "--sft-batch", "16", "--steps", "20", "--prompts-per-step", "4", "--num-generations", "4", "--held-out", "20",
        "--eval-every", "10", "--lr", "1e-3", "--rewards", "accuracy:1,format:0.2", "--temperature", "1.0", "--device", "cpu", "--plain",
    ];

    [Fact]
    public void ResolvedConfigRoundTripsToTheSameMetrics()
    {
        string a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b");
        Assert.Equal(0, Whale(["grpo", "train", .. Tiny, "--out", a]));
        var resolved = JsonNode.Parse(File.ReadAllText(Path.Combine(a, "options.json")))!.AsObject();
        // Every field is written, defaults included (e.g. ones this command never named).
        foreach (var key in new[] { "loss_type", "beta", "epsilon", "scale_rewards", "num_iterations", "policy", "sft_learning_rate", "top_p" })
            Assert.True(resolved.ContainsKey(key), key);
        Assert.Equal(0, Whale("grpo", "train", "--config", Path.Combine(a, "options.json"), "--device", "cpu", "--plain", "--out", b));
        var ma = Golden.SeededResultsTests.SeededMetrics(Path.Combine(a, "metrics.jsonl"));
        Assert.Equal(21, ma.Count);
        Assert.Equal(ma, Golden.SeededResultsTests.SeededMetrics(Path.Combine(b, "metrics.jsonl")));
        Assert.Equal(File.ReadAllText(Path.Combine(a, "options.json")), File.ReadAllText(Path.Combine(b, "options.json")));
    }

    [Fact]
    public void FlagsGivenOverrideTheFileAndAbsentFlagsKeepIt()
    {
        Directory.CreateDirectory(_dir);
        var cfg = Path.Combine(_dir, "run.json");
        // TRL GRPOConfig names; keys left out keep the defaults.
        File.WriteAllText(cfg, """{ "task": "addition", "digits": 1, "num_generations": 4, "learning_rate": 0.002, "beta": 0.05, "loss_type": "dr_grpo", "sft_steps": 0, "steps": 0, "held_out": 5, "policy": { "hidden": 32, "layers": 1, "heads": 2 } }""");
        var out1 = Path.Combine(_dir, "c");
        Assert.Equal(0, Whale("grpo", "train", "--config", cfg, "--lr", "0.003", "--device", "cpu", "--plain", "--out", out1));
        var o = GrpoConfigFile.Read(Path.Combine(out1, "options.json"));
        Assert.Equal(0.003, o.LearningRate);                 // flag given: wins
        Assert.Equal(0.05, o.Beta);                          // file value: kept although --beta has a default
        Assert.Equal("dr_grpo", o.LossType);
        Assert.Equal(4, o.NumGenerations);
        Assert.Equal(32, o.Policy.Hidden);
        Assert.Equal(new GrpoOptions().PromptsPerStep, o.PromptsPerStep);   // in neither: the default

        File.WriteAllText(cfg, """{ "num_generation": 4 }""");             // a typo is an error, not a silent default
        Assert.Throws<WhaleFormatException>(() => GrpoConfigFile.Read(cfg));
    }

    [Fact]
    public void SftInitContinuesFromTheGivenWeights()
    {
        string a = Path.Combine(_dir, "sa"), b = Path.Combine(_dir, "sb");
        string[] tiny = ["--task", "addition", "--digits", "1", "--hidden", "32", "--layers", "1", "--heads", "2", "--sft-batch", "8", "--held-out", "10", "--device", "cpu"];
        Assert.Equal(0, Whale(["grpo", "sft", .. tiny, "--sft-steps", "5", "--out", a]));
        Assert.Equal(0, Whale(["grpo", "sft", .. tiny, "--sft-steps", "0", "--init", Path.Combine(a, "sft.bin"), "--out", b]));
        Assert.Equal(File.ReadAllBytes(Path.Combine(a, "sft.bin")), File.ReadAllBytes(Path.Combine(b, "sft.bin")));   // 0 more steps: the same weights
    }
}
