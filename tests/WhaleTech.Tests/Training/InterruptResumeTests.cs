// Ctrl-C in the middle of a run, then --resume, gives the same final weights as an uninterrupted run with the
// same seed (CPU, bit-exact) — for `whale train lm`, `whale mtp train`, `whale grpo sft` and `whale grpo train`,
// and the same results for the experiments `whale moe experiment`, `whale mla quality`, `whale mla frontier`,
// `whale mla convert-study` and `whale fp8 train` (exit 130, a partial summary, then --resume) — run as real
// processes that get a real SIGINT. And the TensorBoard event files a run writes are readable: the test parses the TFRecord framing
// and the Event protos back and finds every step's loss.
using System.Diagnostics;
using System.Runtime.InteropServices;
using WhaleTech.Tests.Golden;

namespace WhaleTech.Tests.Training;

public class InterruptResumeTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("whale-interrupt-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    [DllImport("libc", SetLastError = true)] static extern int kill(int pid, int sig);
    const int SIGINT = 2;

    static readonly string WhaleDll = Path.Combine(AppContext.BaseDirectory, "whale.dll");

    /// <summary>A shell that started this test run in the background (`cmd &amp;` without job control) passes SIGINT on as
    /// ignored, and .NET then never installs its Ctrl-C handler. The child is therefore started through python3, which
    /// restores SIGINT's default disposition and execs dotnet, so the test sees what a user's terminal would.</summary>
    static readonly string? Python = new[] { "/usr/bin/python3", "/usr/local/bin/python3" }.FirstOrDefault(File.Exists);

    static Process Start(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(Python ?? "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Python is not null)
            foreach (var a in new[] { "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])", "dotnet" })
                psi.ArgumentList.Add(a);
        psi.ArgumentList.Add(WhaleDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["WHALETECH_THREADS"] = "1";
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    static int Run(IEnumerable<string> args)
    {
        using var p = Start(args);
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(3)), "whale did not finish in 3 minutes");
        return p.ExitCode;
    }

    /// <summary>Starts the command, waits until metrics.jsonl has <paramref name="rows"/> rows, sends SIGINT, returns the exit code.</summary>
    static int RunAndInterrupt(IEnumerable<string> args, string metrics, int rows)
        => RunAndInterrupt(args, () => File.Exists(metrics) && File.ReadAllLines(metrics).Length >= rows);

    /// <summary>Starts the command, waits until <paramref name="ready"/>, sends SIGINT, returns the exit code.</summary>
    static int RunAndInterrupt(IEnumerable<string> args, Func<bool> ready)
    {
        using var p = Start(args);
        var sw = Stopwatch.StartNew();
        while (!ready())
        {
            Assert.False(p.HasExited, "the run ended before it could be interrupted");
            Assert.True(sw.Elapsed < TimeSpan.FromMinutes(2), "no metrics rows within 2 minutes");
            Thread.Sleep(10);
        }
        Assert.Equal(0, kill(p.Id, SIGINT));
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(1)), "whale did not stop within a minute of SIGINT");
        return p.ExitCode;
    }

    [Fact]
    public void TrainLmInterruptedAndResumedEqualsAnUninterruptedRun()
    {
        string[] common = ["train", "lm", "--device", "cpu", "--steps", "40", "--hidden", "32", "--layers", "1", "--checkpoint-every", "10"];
        string a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b");
        Assert.Equal(0, Run([.. common, "--out", a]));
        Assert.Equal(130, RunAndInterrupt([.. common, "--out", b], Path.Combine(b, "metrics.jsonl"), rows: 15));
        int stoppedAt = File.ReadAllLines(Path.Combine(b, "metrics.jsonl")).Length;
        Assert.InRange(stoppedAt, 15, 39);                                   // stopped mid-run, after the step it was in
        Assert.Equal(0, Run([.. common, "--out", b, "--resume"]));
        Assert.Equal(File.ReadAllBytes(Path.Combine(a, "model.safetensors")), File.ReadAllBytes(Path.Combine(b, "model.safetensors")));
        Assert.Equal(40, File.ReadAllLines(Path.Combine(b, "metrics.jsonl")).Length);   // one row per step, none repeated

        var events = TensorBoardEvents.ReadScalars(Path.Combine(a, "tensorboard"));
        Assert.Equal(Enumerable.Range(1, 40), events.Where(e => e.Tag == "loss").Select(e => (int)e.Step).Order());
        var jsonl = File.ReadAllLines(Path.Combine(a, "metrics.jsonl")).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement).ToList();
        foreach (var (e, row) in events.Where(e => e.Tag == "loss").OrderBy(e => e.Step).Zip(jsonl))
            Assert.Equal((float)row.GetProperty("loss").GetDouble(), e.Value);
        Assert.Contains(events, e => e.Tag == "eval/loss");
    }

    [Fact]
    public void MtpTrainInterruptedAndResumedEqualsAnUninterruptedRun()
    {
        string[] common = ["mtp", "train", "--device", "cpu", "--steps", "30", "--hidden", "32", "--layers", "1", "--depth", "1", "--checkpoint-every", "10"];
        string a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b");
        Assert.Equal(0, Run([.. common, "--out", a]));
        Assert.Equal(130, RunAndInterrupt([.. common, "--out", b], Path.Combine(b, "metrics.jsonl"), rows: 12));
        Assert.InRange(File.ReadAllLines(Path.Combine(b, "metrics.jsonl")).Length, 12, 29);
        Assert.Equal(2, Run([.. common, "--out", b, "--resume", "--lr", "0.001"]));      // other options: refused before any work
        Assert.Equal(0, Run([.. common, "--out", b, "--resume"]));
        Assert.Equal(File.ReadAllBytes(Path.Combine(a, "model.safetensors")), File.ReadAllBytes(Path.Combine(b, "model.safetensors")));
        Assert.Contains(TensorBoardEvents.ReadScalars(Path.Combine(b, "tensorboard")), e => e.Tag == "mtp/loss_depth1" && e.Step == 30);
    }

    [Fact]
    public void GrpoSftInterruptedAndResumedEqualsAnUninterruptedRun()
    {
        string[] common = ["grpo", "sft", "--task", "addition", "--digits", "1", "--hidden", "32", "--layers", "1", "--heads", "2",
                           "--moe-experts", "4", "--moe-top-k", "2", "--sft-steps", "400", "--sft-batch", "16", "--held-out", "20", "--device", "cpu"];
        string a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b");
        Assert.Equal(0, Run([.. common, "--out", a]));
        // The first SFT checkpoint (step 50) exists → interrupt; the run stops after its current step and checkpoints it.
        Assert.Equal(130, RunAndInterrupt([.. common, "--out", b], () => File.Exists(Path.Combine(b, "sft-checkpoint", "sft-state.json"))));
        Assert.False(File.Exists(Path.Combine(b, "sft.bin")));
        Assert.Equal(0, Run([.. common, "--out", b, "--resume"]));
        Assert.Equal(File.ReadAllBytes(Path.Combine(a, "sft.bin")), File.ReadAllBytes(Path.Combine(b, "sft.bin")));
        Assert.Equal(File.ReadAllText(Path.Combine(a, "sft-steps.txt")), File.ReadAllText(Path.Combine(b, "sft-steps.txt")));
    }

    [Fact]
    public void GrpoTrainInterruptedAndResumedEqualsAnUninterruptedRun()
    {
        string a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b");
        Assert.Equal(0, Run([.. SeededResultsTests.Grpo50, "--out", a]));
        Assert.Equal(130, RunAndInterrupt([.. SeededResultsTests.Grpo50, "--out", b], Path.Combine(b, "metrics.jsonl"), rows: 20));
        Assert.True(File.ReadAllLines(Path.Combine(b, "metrics.jsonl")).Length < 51);
        Assert.True(File.Exists(Path.Combine(b, "summary.json")) && File.Exists(Path.Combine(b, "reward.png")));
        Assert.Equal(0, Run([.. SeededResultsTests.Grpo50, "--out", b, "--resume"]));
        Assert.Equal(File.ReadAllBytes(Path.Combine(a, "policy.bin")), File.ReadAllBytes(Path.Combine(b, "policy.bin")));
        Assert.Equal(SeededResultsTests.SeededMetrics(Path.Combine(a, "metrics.jsonl")), SeededResultsTests.SeededMetrics(Path.Combine(b, "metrics.jsonl")));
        Assert.Contains(TensorBoardEvents.ReadScalars(Path.Combine(a, "tensorboard")), e => e.Tag == "reward" && e.Step == 50);
    }

    // ---- the experiments that train many runs (Lab/Runs/ExperimentRuns): SIGINT inside a run, then --resume ----------

    /// <summary>The result file's JSON without its timings and the command line (which differ between the runs).</summary>
    static string Seeded(string path)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!;
        void Strip(System.Text.Json.Nodes.JsonNode? n)
        {
            if (n is System.Text.Json.Nodes.JsonObject o)
            {
                foreach (var k in o.Select(p => p.Key).Where(k => k is "seconds" or "Seconds" or "command" or "machine").ToList()) o.Remove(k);
                foreach (var (_, v) in o) Strip(v);
            }
            else if (n is System.Text.Json.Nodes.JsonArray a) foreach (var v in a) Strip(v);
        }
        Strip(node);
        return node.ToJsonString();
    }

    /// <summary>Runs <paramref name="common"/> uninterrupted into a/, interrupted by SIGINT into b/ once <paramref name="metrics"/>
    /// (of b) has <paramref name="rows"/> rows, resumes b/, and checks the exit codes, the partial mark and that the
    /// result files are equal. <paramref name="result"/> names the result file under each output.</summary>
    void InterruptAndResume(string[] common, Func<string, string> output, string metrics, int rows, string result)
    {
        string a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b");
        Assert.Equal(0, Run([.. common, "--out", output(a)]));
        string runMetrics = Path.Combine(b, metrics);
        Assert.Equal(130, RunAndInterrupt([.. common, "--out", output(b)], runMetrics, rows));
        var stoppedAt = File.ReadAllLines(runMetrics).Length;
        Assert.True(File.ReadAllText(Path.Combine(b, result)).Contains("\"partial\": true", StringComparison.OrdinalIgnoreCase)
                    || File.ReadAllText(Path.Combine(b, result)).Contains("\"Partial\": true", StringComparison.Ordinal), "the summary of an interrupted experiment says partial");
        Assert.True(Directory.Exists(Path.Combine(Path.GetDirectoryName(runMetrics)!, "checkpoint")), $"no checkpoint after stopping at step {stoppedAt}");
        Assert.Equal(0, Run([.. common, "--out", output(b), "--resume"]));
        Assert.Equal(Seeded(Path.Combine(a, result)), Seeded(Path.Combine(b, result)));
        Assert.False(Directory.Exists(Path.Combine(Path.GetDirectoryName(runMetrics)!, "checkpoint")));   // dropped once the run finished
    }

    [Fact]
    public void MoeExperimentInterruptedAndResumedEqualsAnUninterruptedRun()
        => InterruptAndResume(["moe", "experiment", "--device", "cpu", "--seeds", "2", "--steps", "30", "--batch-size", "4", "--seq-len", "16", "--hidden", "16",
                               "--layers", "1", "--experts", "4", "--top-k", "2", "--expert-width", "8", "--eval-batches", "2", "--methods", "none,loss-free", "--checkpoint-every", "10"],
                              dir => dir, Path.Combine("runs", "loss-free-1e-3-seed-0", "metrics.jsonl"), rows: 12, "results.json");

    [Fact]
    public void MlaQualityInterruptedAndResumedEqualsAnUninterruptedRun()
        => InterruptAndResume(["mla", "quality", "--device", "cpu", "--seeds", "1", "--steps", "40", "--checkpoint-every", "10"],
                              dir => dir, Path.Combine("runs", "gqa-seed-0", "metrics.jsonl"), rows: 12, "mla-quality.json");

    [Fact]
    public void MlaFrontierInterruptedAndResumedEqualsAnUninterruptedRun()
        => InterruptAndResume(["mla", "frontier", "--device", "cpu", "--quick", "--seeds", "1", "--steps", "60", "--eval-every", "10", "--checkpoint-every", "20"],
                              dir => dir, Path.Combine("runs", "mla-12-4-seed-0", "metrics.jsonl"), rows: 25, "mla-frontier.json");

    /// <summary>The conversion study trains dependent models (a source, then fine-tunes of its conversions): stopped inside a
    /// fine-tune, the resume restores the finished source from its saved weights, rebuilds the conversions and continues.</summary>
    [Fact]
    public void MlaConvertStudyInterruptedAndResumedEqualsAnUninterruptedRun()
        => InterruptAndResume(["mla", "convert-study", "--device", "cpu", "--quick", "--seeds", "1", "--source-steps", "40", "--finetune-steps", "40", "--checkpoint-every", "10"],
                              dir => dir, Path.Combine("runs", "seed-0-transmla-mqa-converted-ft", "metrics.jsonl"), rows: 15, "mla-convert.json");

    [Fact]
    public void Fp8TrainInterruptedAndResumedEqualsAnUninterruptedRun()
        => InterruptAndResume(["fp8", "train", "--device", "cpu", "--steps", "30", "--seeds", "1", "--hidden", "32", "--layers", "1", "--batch", "4", "--seq-len", "16",
                               "--recipes", "deepseek-v3", "--checkpoint-every", "10"],
                              dir => Path.Combine(dir, "fp8"), Path.Combine("fp8.runs", "deepseek-v3-seed-1", "metrics.jsonl"), rows: 12, "fp8.json");
}

/// <summary>A minimal reader of TensorBoard event files: TFRecord framing (u64 length, u32 CRC, data, u32 CRC)
/// around Event protos, decoded by hand: Event {1: wall_time double, 2: step int64, 5: Summary}, Summary
/// {1: Value}, Value {1: tag string, 2: simple_value float}.</summary>
static class TensorBoardEvents
{
    public sealed record Scalar(string Tag, long Step, float Value);

    public static List<Scalar> ReadScalars(string folder)
    {
        var result = new List<Scalar>();
        foreach (var file in Directory.GetFiles(folder, "events.out.tfevents.*"))
        {
            var bytes = File.ReadAllBytes(file);
            int pos = 0;
            while (pos < bytes.Length)
            {
                long len = BitConverter.ToInt64(bytes, pos);
                pos += 12;                                                   // length + its CRC
                var record = bytes.AsSpan(pos, (int)len).ToArray();
                pos += (int)len + 4;                                         // data + its CRC
                long step = 0;
                var values = new List<(string, float)>();
                foreach (var (field, wire, value, sub) in Fields(record))
                {
                    if (field == 2 && wire == 0) step = (long)value;
                    if (field == 5 && wire == 2)
                        foreach (var (f, w, _, v) in Fields(sub!))
                            if (f == 1 && w == 2)
                            {
                                string tag = ""; float x = float.NaN;
                                foreach (var (vf, vw, vv, vs) in Fields(v!))
                                {
                                    if (vf == 1 && vw == 2) tag = System.Text.Encoding.UTF8.GetString(vs!);
                                    if (vf == 2 && vw == 5) x = BitConverter.Int32BitsToSingle((int)vv);
                                }
                                values.Add((tag, x));
                            }
                }
                result.AddRange(values.Select(v => new Scalar(v.Item1, step, v.Item2)));
            }
            Assert.Equal(bytes.Length, pos);                                 // the framing accounts for every byte
        }
        return result;
    }

    /// <summary>Protobuf fields: (number, wire type, varint / fixed value, length-delimited bytes).</summary>
    static IEnumerable<(int Field, int Wire, ulong Value, byte[]? Bytes)> Fields(byte[] b)
    {
        int i = 0;
        ulong Varint() { ulong r = 0; int shift = 0; while (true) { byte x = b[i++]; r |= (ulong)(x & 0x7F) << shift; if (x < 0x80) return r; shift += 7; } }
        var list = new List<(int, int, ulong, byte[]?)>();
        while (i < b.Length)
        {
            ulong key = Varint();
            int field = (int)(key >> 3), wire = (int)(key & 7);
            switch (wire)
            {
                case 0: list.Add((field, wire, Varint(), null)); break;
                case 1: list.Add((field, wire, BitConverter.ToUInt64(b, i), null)); i += 8; break;
                case 5: list.Add((field, wire, BitConverter.ToUInt32(b, i), null)); i += 4; break;
                case 2: { int n = (int)Varint(); list.Add((field, wire, 0, b.AsSpan(i, n).ToArray())); i += n; break; }
                default: throw new InvalidDataException($"wire type {wire}");
            }
        }
        return list;
    }
}
