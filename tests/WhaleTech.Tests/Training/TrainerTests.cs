using TorchSharp;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Training;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Tests.Training;

public class TrainerTests
{
    [Fact]
    public void TinyLmLearnsWellBelowUnigramEntropy()
    {
        torch.manual_seed(1);
        var tok = new CharTokenizer();
        var trainText = new SyntheticCorpus(20000, seed: 1);
        var evalText = new SyntheticCorpus(4000, seed: 2);
        var model = new DeepSeekLM(ModelConfig.Tiny("mla", vocab: tok.VocabSize, hidden: 64, layers: 2, heads: 4));
        var opts = new TrainOptions { Steps = 150, BatchSize = 16, SequenceLength = 48, LearningRate = 5e-3, WarmupSteps = 15, EvalEvery = 150, EvalBatches = 4 };
        var trainer = new LmTrainer(model, opts);
        var history = trainer.Run(new TokenWindowStream(tok.Encode(trainText.Text), 16, 48, 1), new TokenWindowStream(tok.Encode(evalText.Text), 16, 48, 2), torch.CPU);
        double entropy = evalText.UnigramEntropyNats();
        double evalLoss = history[^1].EvalLoss!.Value;
        Console.WriteLine($"eval {evalLoss} entropy {entropy}"); Assert.True(evalLoss < 0.75 * entropy, $"eval loss {evalLoss:F3} vs unigram entropy {entropy:F3}");
    }

    [Fact]
    public void ScheduleWarmsUpThenDecaysToTheFloor()
    {
        var s = new LrSchedule(1.0, 10, 110, 0.1);
        Assert.Equal(0.1, s.At(0), 12);
        Assert.Equal(1.0, s.At(9), 12);
        Assert.Equal(0.55, s.At(60), 12);
        Assert.Equal(0.1, s.At(110), 12);
        Assert.Throws<WhaleArgumentException>(() => new LrSchedule(1.0, 0, 10, 2.0).Validate());
    }

    [Fact]
    public void NonFiniteLossSkipsTheStepAndStopsAfterKInARow()
    {
        torch.manual_seed(3);
        var model = new DeepSeekLM(ModelConfig.Tiny("mha", vocab: 20, hidden: 16, layers: 1, heads: 2));
        var trainer = new LmTrainer(model, new TrainOptions { Steps = 10, MaxNonFiniteInRow = 3 }) { Warn = _ => { } };
        bool inject = true;
        trainer.AuxiliaryLosses.Add(() => inject ? torch.tensor(float.NaN) : null);
        var before = model.parameters().Select(p => p.clone()).ToList();
        var x = torch.randint(0, 20, [2, 8]); var y = torch.randint(0, 20, [2, 8]);
        Assert.True(trainer.TrainStep(x, y).Skipped);
        Assert.True(model.parameters().Zip(before).All(p => p.First.equal(p.Second).all().item<bool>()), "a skipped step must not change weights");
        Assert.True(trainer.TrainStep(x, y).Skipped);
        Assert.Throws<WhaleException>(() => trainer.TrainStep(x, y));
        inject = false;
        Assert.False(trainer.TrainStep(x, y).Skipped);
    }
}
