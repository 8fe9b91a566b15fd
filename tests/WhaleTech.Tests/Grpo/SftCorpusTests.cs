using WhaleTech.Grpo;

namespace WhaleTech.Tests.Grpo;

/// <summary>The reward-only warm-start corpora (sft_corpus): neither contains a solved example of the target task.</summary>
public class SftCorpusTests
{
    [Fact]
    public void UnsolvedAnswersAreNeverCorrect()
    {
        var task = MathTask.Create("addition", digits: 1);
        var rng = new Random(3);
        for (int i = 0; i < 2000; i++)
        {
            var p = task.Sample(rng);
            Assert.False(task.IsCorrect(p, PolicyModel.UnsolvedAnswer(task, p, rng)));
        }
    }

    [Fact]
    public void SubtractionExamplesAreSolvedSubtractionsInTheTasksNotation()
    {
        var task = MathTask.Create("addition", digits: 2, reverseAnswer: true, padOperands: true);
        var rng = new Random(5);
        for (int i = 0; i < 500; i++)
        {
            var p = PolicyModel.SubtractionExample(task, rng);
            Assert.Matches(@"^\d\d-\d\d=r:$", p.Question);                        // padded operands, the reversed marker, no '+'
            long a = long.Parse(p.Question[..2]), b = long.Parse(p.Question[3..5]);
            Assert.True(a >= b);
            Assert.Equal(3, p.Answer.Length);                                      // addition's padded answer width
            Assert.Equal(a - b, long.Parse(AnswerParser.Reverse(p.Answer)));       // least-significant digit first
        }
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => PolicyModel.SubtractionExample(MathTask.Create("countdown"), rng));
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => new GrpoOptions { SftCorpus = "books" }.Validate());
    }
}
