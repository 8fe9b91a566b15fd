using TorchSharp;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Training;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Tests.Training;

/// <summary>Issue 9: atomic checkpoints, bit-exact resume, no checkpoint from a NaN state, flat memory.</summary>
public class CheckpointTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("whale-ckpt-").FullName;
    public void Dispose() { TrainingCheckpoint.AfterFileWritten = null; try { Directory.Delete(_dir, true); } catch (IOException) { } }

    static readonly CharTokenizer Tok = new();
    static readonly int[] Tokens = Tok.Encode(new SyntheticCorpus(6000, 5).Text);
    static readonly TrainOptions Opts = new() { Steps = 8, BatchSize = 4, SequenceLength = 16, LearningRate = 3e-3, WarmupSteps = 2, EvalEvery = 100 };

    static (DeepSeekLM Model, LmTrainer Trainer, TokenWindowStream Stream) Fresh(MomentPrecision moments = MomentPrecision.Fp32)
    {
        torch.manual_seed(9);
        var cfg = ModelConfig.Tiny("mla", vocab: Tok.VocabSize, hidden: 32, layers: 1, heads: 2) with
        { NRoutedExperts = 4, NSharedExperts = 1, NumExpertsPerTok = 2, MoeIntermediateSize = 16 };
        var model = new DeepSeekLM(cfg);
        return (model, new LmTrainer(model, Opts with { OptimizerMoments = moments }), new TokenWindowStream(Tokens, Opts.BatchSize, Opts.SequenceLength, 3));
    }

    static void Train(LmTrainer t, TokenWindowStream s, int steps)
    {
        for (int i = 0; i < steps; i++)
        {
            using var scope = torch.NewDisposeScope();
            var (x, y) = s.Next(torch.CPU);
            t.TrainStep(x, y);
        }
    }

    [Theory]
    [InlineData(MomentPrecision.Fp32)]
    [InlineData(MomentPrecision.Bf16)]
    public void ResumeIsBitExact(MomentPrecision moments)
    {
        var (a, ta, sa) = Fresh(moments);
        Train(ta, sa, 8);
        var (b, tb, sb) = Fresh(moments);
        Train(tb, sb, 4);
        TrainingCheckpoint.Save(Path.Combine(_dir, "ck"), b, tb, sb);
        var (c, tc, sc) = Fresh(moments);
        TrainingCheckpoint.Load(Path.Combine(_dir, "ck"), c, tc, sc);
        Assert.Equal(4, tc.Step);
        Train(tc, sc, 4);
        var pa = a.state_dict(); var pc = c.state_dict();
        Assert.Equal(pa.Keys.Order(), pc.Keys.Order());
        foreach (var k in pa.Keys) Assert.True(pa[k].equal(pc[k]).all().item<bool>(), $"{k} differs after resume");
    }

    [Fact]
    public void ACheckpointWithBf16MomentsDoesNotLoadIntoAnFp32Trainer()
    {
        var (m, t, s) = Fresh(MomentPrecision.Bf16);
        Train(t, s, 1);
        TrainingCheckpoint.Save(Path.Combine(_dir, "ck"), m, t, s);
        Assert.Contains("\"optimizer_moments\": \"bf16\"", File.ReadAllText(Path.Combine(_dir, "ck", "trainer.json")));
        var (m2, t2, s2) = Fresh();
        var e = Assert.Throws<WhaleFormatException>(() => TrainingCheckpoint.Load(Path.Combine(_dir, "ck"), m2, t2, s2));
        Assert.Contains("optimizer_moments", e.Message);
    }

    [Fact]
    public void KillDuringWriteKeepsThePreviousCheckpoint()
    {
        var (m, t, s) = Fresh();
        Train(t, s, 2);
        var ck = Path.Combine(_dir, "ck");
        TrainingCheckpoint.Save(ck, m, t, s);
        var before = File.ReadAllBytes(Path.Combine(ck, "model.safetensors"));
        Train(t, s, 2);
        TrainingCheckpoint.AfterFileWritten = stage => { if (stage == "optimizer") throw new IOException("simulated kill"); };
        Assert.Throws<IOException>(() => TrainingCheckpoint.Save(ck, m, t, s));
        TrainingCheckpoint.AfterFileWritten = null;
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(ck, "model.safetensors")));
        Assert.DoesNotContain(Directory.GetDirectories(_dir), d => d.EndsWith(".tmp", StringComparison.Ordinal));
        var (m2, t2, s2) = Fresh();
        Assert.Equal(2, TrainingCheckpoint.Load(ck, m2, t2, s2).Step);
    }

    [Fact]
    public void NoCheckpointFromANonFiniteState()
    {
        var (m, t, s) = Fresh();
        var ck = Path.Combine(_dir, "ck");
        TrainingCheckpoint.Save(ck, m, t, s);
        using (torch.no_grad()) m.parameters().First().fill_(float.NaN);
        Assert.Throws<WhaleException>(() => TrainingCheckpoint.Save(ck, m, t, s));
        Assert.True(File.Exists(Path.Combine(ck, "model.safetensors")));
    }

    [Fact]
    public void LiveTensorCountStaysFlatOver1000Steps()
    {
        torch.manual_seed(1);
        var model = new DeepSeekLM(ModelConfig.Tiny("mla", vocab: Tok.VocabSize, hidden: 16, layers: 1, heads: 2));
        var trainer = new LmTrainer(model, Opts with { Steps = 1000, BatchSize = 2, SequenceLength = 8 });
        var stream = new TokenWindowStream(Tokens, 2, 8, 1);
        long Live() => DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Train(trainer, stream, 20);                       // optimizer state allocated
        long after20 = Live();
        Train(trainer, stream, 980);
        long after1000 = Live();
        Assert.True(after1000 - after20 <= 0, $"live tensors grew from {after20} to {after1000}");
    }
}
