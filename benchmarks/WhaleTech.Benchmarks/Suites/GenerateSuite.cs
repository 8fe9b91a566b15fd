// `generate`: greedy batched generation (batch 8, prompt 32, 64 new tokens, KV cache) of two 4-layer MLA + MoE
// DeepSeek-style LMs (D 256 with 16 experts top-4; D 512 with the moe-roofline layer: 64 experts top-6), plus one allocation-heavy MoE layer forward (4,096 tokens; Sorted and PaddedBmm), in
// child processes so that builds and allocator settings can be compared in one interleaved run:
//   WHALETECH_BASELINE=<path to another build's WhaleTech.Benchmarks.dll>  adds that build (e.g. the commit before
//                                                                       the decode-path speed-ups) as a second program
//   WHALETECH_MALLOC_VARIANTS=1                                         adds each program again with glibc malloc
//                                                                       kept from returning memory to the kernel
// The parent runs every (program, environment) child once per round, for several rounds; each child measures
// every workload a few times and prints its samples; rows are medians over all samples, with p10/p90, minor page
// faults per decode step (getrusage-equivalent /proc/self/stat minflt), and the roofline of a decode step
// (weights + KV cache read once ÷ copy bandwidth, 2·params·B FLOPs ÷ GEMM rate; copy and GEMM measured by each
// child in the same process).
using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using WhaleTech.Lab.Bench;
using WhaleTech.Core;
using WhaleTech.Model;
using WhaleTech.Moe;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Benchmarks;

public sealed class GenerateSuite : ISuite
{
    public string Name => "generate";
    public string Description =>
        "Greedy generation (batch 8, prompt 32, 64 new tokens) of two 4-layer MLA + MoE LMs and a 4,096-token MoE layer forward: " +
        "tokens/s, ms, page faults and roofline fraction, per build (WHALETECH_BASELINE) and glibc malloc setting, interleaved in child processes.";

    /// <summary>glibc settings that keep freed memory in the heap: big blocks from the heap (up to glibc's 32 MiB cap
    /// on the mmap threshold), no trimming, and a generous top pad.</summary>
    public static readonly (string Name, string Value)[] MallocKeep =
    [
        ("MALLOC_MMAP_THRESHOLD_", "33554432"), ("MALLOC_TRIM_THRESHOLD_", "4294967296"), ("MALLOC_TOP_PAD_", "268435456"),
    ];

    const string ChildVar = "WHALETECH_GENERATE_CHILD";

    public BenchmarkResult Run(Device device, SuiteOptions options)
    {
        var result = new BenchmarkResult(Name, Description, MachineInfo.Collect(device)) { Plot = new PlotSpec("tokens_per_s", "program") };
        if (Environment.GetEnvironmentVariable(ChildVar) == "1") { Child(device, options); return result; }

        string self = typeof(GenerateSuite).Assembly.Location;
        var programs = new List<(string Name, string Dll)> { ("current", self) };
        if (Environment.GetEnvironmentVariable("WHALETECH_BASELINE") is { Length: > 0 } baseline) programs.Insert(0, ("baseline", Path.GetFullPath(baseline)));
        bool mallocVariants = Environment.GetEnvironmentVariable("WHALETECH_MALLOC_VARIANTS") == "1";
        var children = programs.SelectMany(p => mallocVariants
            ? new[] { (p.Name, p.Dll, Malloc: "default"), (p.Name, p.Dll, Malloc: "keep") }
            : new[] { (p.Name, p.Dll, Malloc: "default") }).ToArray();
        int rounds = options.Quick ? 1 : 4;
        result.With("rounds", rounds).With("programs", string.Join(", ", programs.Select(p => $"{p.Name}={Path.GetRelativePath(Directory.GetCurrentDirectory(), p.Dll)}")))
              .With("malloc_keep", string.Join(" ", MallocKeep.Select(m => $"{m.Name}={m.Value}")));
        var samples = new Dictionary<(string Program, string Malloc, string Workload), List<double[]>>();
        for (int r = 0; r < rounds; r++)
            foreach (var c in children)
                foreach (var (workload, values) in RunChild(c.Dll, c.Malloc == "keep", device, options.Quick))
                {
                    var key = (c.Name, c.Malloc, workload);
                    if (!samples.TryGetValue(key, out var list)) samples[key] = list = new List<double[]>();
                    list.Add(values);
                }
        foreach (var ((program, malloc, workload), list) in samples.OrderBy(k => k.Key.Workload).ThenBy(k => k.Key.Program).ThenBy(k => k.Key.Malloc))
        {
            // values: ms, faults per call, tokens (0 for the MoE forward), roofline ms, copy GB/s, GEMM GFLOP/s
            var t = Timing.FromSamples(list.Select(v => v[0]).ToArray());
            double faults = Timing.FromSamples(list.Select(v => v[1]).ToArray()).MedianMs;
            double tokens = list[0][2], roof = Timing.FromSamples(list.Select(v => v[3]).ToArray()).MedianMs;
            var row = result.AddRow($"{workload}").With("program", program).With("malloc", malloc).With("samples", list.Count)
                .Add("median_ms", t.MedianMs, "ms").Add("p10_ms", t.P10Ms, "ms").Add("p90_ms", t.P90Ms, "ms")
                .Add("page_faults", faults, "").Add("roofline_fraction", roof / t.MedianMs, "")
                .Add("copy_gbps", Timing.FromSamples(list.Select(v => v[4]).ToArray()).MedianMs, "GB/s")
                .Add("gemm_gflops", Timing.FromSamples(list.Select(v => v[5]).ToArray()).MedianMs, "GFLOP/s");
            if (tokens > 0) row.Add("tokens_per_s", tokens / t.MedianSeconds, "tokens/s").Add("page_faults_per_step", faults / GenNew, "");
            Console.WriteLine($"  {workload} [{program}, malloc {malloc}]: {t.MedianMs:F1} ms (p10 {t.P10Ms:F1}, p90 {t.P90Ms:F1}, n={list.Count})" +
                              (tokens > 0 ? $", {tokens / t.MedianSeconds:F0} tokens/s" : "") + $", {faults:F0} faults, {roof / t.MedianMs:P0} of roofline");
        }
        return result;
    }

    const int GenBatch = 8, GenPrompt = 32, GenNew = 64;

    static IEnumerable<(string Workload, double[] Values)> RunChild(string dll, bool mallocKeep, Device device, bool quick)
    {
        // This program again: its own executable when it runs as one (the self-contained GPU bundle has no `dotnet`);
        // another build, or this one started as `dotnet x.dll`: through dotnet.
        string exe = Environment.ProcessPath ?? "dotnet";
        bool self = Path.GetFullPath(dll) == Path.GetFullPath(typeof(GenerateSuite).Assembly.Location);
        bool direct = self && Path.GetFileNameWithoutExtension(exe) != "dotnet";
        var psi = new ProcessStartInfo(direct ? exe : "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (!direct) psi.ArgumentList.Add(dll);
        psi.ArgumentList.Add("generate");
        psi.ArgumentList.Add("--device");
        psi.ArgumentList.Add(device.type == DeviceType.CUDA ? "cuda" : "cpu");
        psi.ArgumentList.Add("--out");
        psi.ArgumentList.Add(Path.Combine(Path.GetTempPath(), "whale-generate-child"));
        if (quick) psi.ArgumentList.Add("--quick");
        psi.Environment[ChildVar] = "1";
        foreach (var (name, value) in MallocKeep)
            if (mallocKeep) psi.Environment[name] = value; else psi.Environment.Remove(name);
        using var p = Process.Start(psi) ?? throw new WhaleException($"could not start dotnet {dll}");
        var stderr = p.StandardError.ReadToEndAsync();
        var lines = new List<string>();
        while (p.StandardOutput.ReadLine() is { } line) lines.Add(line);
        p.WaitForExit();
        if (p.ExitCode != 0) throw new WhaleException($"child {dll} exited with {p.ExitCode}: {stderr.Result}");
        foreach (var line in lines.Where(l => l.StartsWith("SAMPLE ")))
        {
            var parts = line.Split(' ');
            yield return (parts[1], parts.Skip(2).Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToArray());
        }
    }

    /// <summary>The child: measures every workload and prints "SAMPLE workload ms faults tokens roofline_ms copy_gbps gemm_gflops".</summary>
    static void Child(Device device, SuiteOptions options)
    {
        bool quick = options.Quick;
        int reps = quick ? 2 : 3;
        using var probe = new LimitProbe(device, quick);
        // Two 4-layer MLA + MoE LMs (vocab 64): a small one, and one whose MoE layers are the moe-roofline layer
        // (D 512, 64 experts × F 128, top-6, 2 shared) — the shapes the moe-roofline suite measures.
        var models = new[]
        {
            ("generate-d256-e16", (ModelConfig.Tiny("mla", vocab: 64, hidden: quick ? 64 : 256, layers: 4, heads: 4) with
            {
                NRoutedExperts = 16, NSharedExperts = 1, NumExpertsPerTok = 4, MoeIntermediateSize = quick ? 32 : 128, NGroup = 1, TopkGroup = 1, MaxPositionEmbeddings = 256,
            }).Validate()),
            ("generate-d512-e64", (ModelConfig.Tiny("mla", vocab: 64, hidden: quick ? 64 : 512, layers: 4, heads: 8) with
            {
                NRoutedExperts = quick ? 16 : 64, NSharedExperts = 2, NumExpertsPerTok = 6, MoeIntermediateSize = quick ? 32 : 128, NGroup = 1, TopkGroup = 1, MaxPositionEmbeddings = 256,
            }).Validate()),
        };
        var built = models.Select(m => { torch.manual_seed(1); var lm = new DeepSeekLM(m.Item2); lm.to(device); return (Name: m.Item1, Cfg: m.Item2, Model: lm); }).ToArray();
        var prompts = Enumerable.Range(0, GenBatch).Select(i => Enumerable.Range(0, GenPrompt).Select(j => 3 + (i * 5 + j * 7) % 60).ToArray()).ToArray();
        var opts = new SamplingOptions { MaxNewTokens = GenNew, StopTokens = [] };

        var moeCfg = (ModelConfig.Tiny("mla", hidden: quick ? 64 : 512) with
        {
            NRoutedExperts = quick ? 8 : 64, MoeIntermediateSize = quick ? 16 : 128, NumExpertsPerTok = quick ? 2 : 6, NSharedExperts = 2, NGroup = 1, TopkGroup = 1,
        }).Validate();
        using var moe = new DeepSeekMoE(moeCfg, "bench.mlp", Linears.Standard(moeCfg.InitializerRange));
        moe.to(device);
        moe.eval();
        long moeTokens = quick ? 256 : 4096;
        using var moeX = torch.randn(moeTokens, moeCfg.HiddenSize, device: device);
        long moeParams = moe.parameters().Sum(p => p.numel());
        double moeFlops = moeTokens * (6.0 * moeCfg.HiddenSize * moeCfg.MoeIntermediateSize * (moeCfg.NumExpertsPerTok!.Value + 2) + 2.0 * moeCfg.HiddenSize * moeCfg.NRoutedExperts!.Value);

        var workloads = built.Select(b => (b.Name, (Action)(() => Generation.Generate(b.Model, prompts, opts))))
            .Append(("moe-fwd-sorted", () => { moe.DispatchPath = MoeDispatch.Sorted; using var _ = torch.no_grad(); moe.forward(moeX); }))
            .Append(("moe-fwd-paddedbmm", () => { moe.DispatchPath = MoeDispatch.PaddedBmm; using var _ = torch.no_grad(); moe.forward(moeX); }))
            .ToArray();
        var samples = Interleave.Run(device, workloads.Select(w => w.Item2).Append(probe.Copy).Append(probe.Gemm).ToArray(), warmup: 1, rounds: reps);
        var limits = probe.From(samples[^2], samples[^1]);
        var roofs = built.Select(b =>
        {
            // A decode step reads every weight and the KV cache once (B · S̄ · (Dc + Dr) fp32 per layer, S̄ the mean
            // context) and does 2 · B · (active parameters) FLOPs (a token uses K of the E routed experts).
            long all = b.Model.parameters().Sum(p => p.numel());
            long routed = b.Model.named_parameters().Where(p => p.name.Contains(".experts.")).Sum(p => p.parameter.numel());
            double active = all - routed * (1 - (double)b.Cfg.NumExpertsPerTok!.Value / b.Cfg.NRoutedExperts!.Value);
            double meanContext = GenPrompt + GenNew / 2.0;
            double stepBytes = 4.0 * (all + b.Cfg.NumHiddenLayers * GenBatch * meanContext * (b.Cfg.KvLoraRank + b.Cfg.QkRopeHeadDim));
            return GenNew * limits.RooflineMs(stepBytes, 2.0 * GenBatch * active);
        }).ToArray();
        double moeRoof = limits.RooflineMs(4.0 * (moeParams + 2 * moeTokens * moeCfg.HiddenSize), moeFlops);
        for (int w = 0; w < workloads.Length; w++)
            for (int i = 0; i < reps; i++)
            {
                bool gen = w < built.Length;
                Console.WriteLine(FormattableString.Invariant(
                    $"SAMPLE {workloads[w].Item1} {samples[w].Ms[i]} {samples[w].Faults[i]} {(gen ? GenBatch * GenNew : 0)} {(gen ? roofs[w] : moeRoof)} {limits.CopyGBps} {limits.GemmGflops}"));
            }
        foreach (var b in built) b.Model.Dispose();
    }
}
