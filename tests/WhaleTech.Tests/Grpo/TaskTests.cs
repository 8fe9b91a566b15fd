using WhaleTech.Grpo;
using WhaleTech.Model;

namespace WhaleTech.Tests.Grpo;

public class TaskTests
{
    static readonly string[] TaskNames = ["addition", "multiplication", "countdown", "linear"];

    [Theory]
    [InlineData("addition")]
    [InlineData("multiplication")]
    [InlineData("countdown")]
    [InlineData("linear")]
    public void ReferenceSolutionsScoreFullMarksAndTheAlphabetCoversThem(string name)
    {
        var task = MathTask.Create(name, digits: 3, numbers: name == "countdown" ? 4 : 3);
        var tok = PolicyModel.Tokenizer();
        var acc = Rewards.Accuracy(task); var fmt = Rewards.Format(); var part = Rewards.Partial(task);
        var rng = new Random(1);
        for (int i = 0; i < 300; i++)
        {
            var p = task.Sample(rng);
            Assert.True(tok.CanEncode(p.Question + p.Solution), $"{p.Question}{p.Solution}");
            Assert.Equal(1.0, acc(p, p.Solution));
            Assert.Equal(1.0, fmt(p, p.Solution));
            Assert.Equal(1.0, part(p, p.Solution));
            Assert.Equal(0.0, acc(p, p.Answer));                      // no tags → no credit
        }
    }

    [Theory]
    [InlineData("addition", false, true)]
    [InlineData("addition", true, false)]
    [InlineData("addition", true, true)]
    [InlineData("multiplication", true, true)]
    public void ReversedAndPaddedFormatsScoreTheirReferenceAndOnlyTheRightValue(string name, bool reverse, bool pad)
    {
        var task = MathTask.Create(name, digits: 2, reverseAnswer: reverse, padOperands: pad);
        var tok = PolicyModel.Tokenizer();
        var acc = Rewards.Accuracy(task); var part = Rewards.Partial(task);
        var rng = new Random(3);
        for (int i = 0; i < 300; i++)
        {
            var p = task.Sample(rng);
            Assert.True(tok.CanEncode(p.Question + p.Solution), $"{p.Question}{p.Solution}");
            Assert.Equal(reverse, p.Question.EndsWith("=" + ArithmeticTask.ReversedMarker));
            if (pad) Assert.Equal(2 * 2 + 2 + (reverse ? 2 : 0), p.Question.Length);          // "07+45=" (+ "r:")
            Assert.Equal(1.0, acc(p, p.Solution));
            Assert.Equal(1.0, part(p, p.Solution));
            string value = p.Target.ToString(), written = reverse ? AnswerParser.Reverse(value) : value;
            Assert.Equal(1.0, acc(p, PromptTemplate.FormatAnswer(written)));                    // the unpadded value counts too
            string wrong = (p.Target + 1).ToString();
            Assert.Equal(0.0, acc(p, PromptTemplate.FormatAnswer(reverse ? AnswerParser.Reverse(wrong) : wrong)));
        }
    }

    [Fact]
    public void ReversedAnswersParseRightToLeftAndGetCreditFromTheUnitsDigit()
    {
        Assert.Equal(83, AnswerParser.ParseInteger("38", leastSignificantFirst: true));
        Assert.Equal(100, AnswerParser.ParseInteger("001", leastSignificantFirst: true));
        Assert.Equal(-21, AnswerParser.ParseInteger("-12", leastSignificantFirst: true));
        Assert.Null(AnswerParser.ParseInteger("3a", leastSignificantFirst: true));
        var task = MathTask.Create("addition", digits: 2, reverseAnswer: true);
        var p = new MathProblem("addition", "46+37=r:", "38", [], 83);
        Assert.True(task.IsCorrect(p, "38"));
        Assert.False(task.IsCorrect(p, "83"));                            // the readable order is wrong here
        Assert.Equal(0.5, task.PartialCredit(p, "39"), 1e-12);            // units digit right, tens wrong
        Assert.Equal(0.5, task.PartialCredit(p, "48"), 1e-12);
        Assert.Equal(2 / 3.0, task.PartialCredit(p, "381"), 1e-12);       // aligned at the units digit (left)
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => MathTask.Create("countdown", reverseAnswer: true));
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => MathTask.Create("linear", padOperands: true));
    }

    [Fact]
    public void PartialCreditAndWeightedRewards()
    {
        var task = MathTask.Create("addition", digits: 3);
        var p = new MathProblem("addition", "123+456=", "579", [], 579);
        Assert.Equal(2 / 3.0, Rewards.Partial(task)(p, "<answer>578</answer>"), 1e-12);
        Assert.Equal(0.0, Rewards.Accuracy(task)(p, "<answer>578</answer>"));
        var rs = Rewards.Parse("accuracy:1,format:0.1", task);
        var (total, per) = Rewards.Score(rs, [p, p, p], ["<answer>579</answer>", "<answer>578</answer>", "579"]);
        Assert.Equal([1.1, 0.1, 0.0], total.Select(t => Math.Round(t, 12)).ToArray());
        Assert.Equal([1.0, 1.0, 0.0], per["format"]);
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => Rewards.Parse("accuracy:x", task));
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => Rewards.Parse("speed", task));
    }

    [Fact]
    public void CountdownVerifierChecksNumbersAndValue()
    {
        var task = MathTask.Create("countdown", numbers: 3);
        var p = new MathProblem("countdown", "3,7,9>30:", "3*7+9", [3, 7, 9], 30);
        Assert.True(task.IsCorrect(p, "(9+1*1)*3") is false);        // uses numbers not given
        Assert.True(task.IsCorrect(p, "9+7*3"));
        Assert.True(task.IsCorrect(p, "(7-3)*9-6") is false);
        Assert.False(task.IsCorrect(p, "3*7+9+0"));
        Assert.False(task.IsCorrect(p, "9/0+3+7"));
        Assert.True(ExpressionEvaluator.TryEvaluate("(1+2)*(3+4)/7", out var v) && v == 3);
        Assert.False(ExpressionEvaluator.TryEvaluate(new string('(', 500) + "1" + new string(')', 500), out _));
    }

    [Fact]
    public void ParsingNeverThrowsOnRandomText()
    {
        var rng = new Random(5);
        string pool = PromptTemplate.Alphabet + "<answer></answer><think></think>\u0000\uFFFF€é";
        var tasks = TaskNames.Select(n => MathTask.Create(n)).ToArray();
        var probs = tasks.Select(t => t.Sample(new Random(1))).ToArray();
        for (int i = 0; i < 3000; i++)
        {
            int len = rng.Next(0, 60);
            var s = new string(Enumerable.Range(0, len).Select(_ => pool[rng.Next(pool.Length)]).ToArray());
            if (i % 3 == 0) s = "<answer>" + s;
            if (i % 5 == 0) s += "</answer>";
            for (int k = 0; k < tasks.Length; k++)
            {
                foreach (var f in new[] { Rewards.Accuracy(tasks[k]), Rewards.Format(), Rewards.Partial(tasks[k]) })
                {
                    var r = f(probs[k], s);
                    Assert.True(r >= 0 && r <= 1);
                }
            }
        }
        Assert.Null(AnswerParser.ExtractAnswer(null));
        Assert.Null(AnswerParser.ParseInteger("-"));
        Assert.Null(AnswerParser.ParseInteger("99999999999999999999999"));
    }

    [Fact]
    public void ValidationSetAvoidsHeldOutQuestions()
    {
        var task = MathTask.Create("addition", digits: 1);
        var held = task.HeldOut(seed: 4, count: 30).Select(p => p.Question).ToHashSet();
        var val = task.Validation(seed: 4, count: 30, held);
        Assert.Equal(30, val.Count);
        Assert.DoesNotContain(val, p => held.Contains(p.Question));
        Assert.Equal(val.Select(p => p.Question).Distinct().Count(), val.Count);
    }

    [Fact]
    public void TrainAndHeldOutSplitsAreDisjointAndSeeded()
    {
        var task = MathTask.Create("addition", digits: 1);           // 100 possible questions: overlap would show
        var held = task.HeldOut(seed: 4, count: 30);
        Assert.Equal(30, held.Select(p => p.Question).Distinct().Count());
        var set = held.Select(p => p.Question).ToHashSet();
        for (int s = 0; s < 50; s++)
            for (int k = 0; k < 8; k++)
                Assert.DoesNotContain(task.Train(4, s, k, set).Question, set);
        Assert.Equal(held.Select(p => p.Question), task.HeldOut(4, 30).Select(p => p.Question));
        Assert.Equal(task.Train(4, 7, 3, set), task.Train(4, 7, 3, set));
        Assert.NotEqual(held.Select(p => p.Question), task.HeldOut(5, 30).Select(p => p.Question));
    }
}
