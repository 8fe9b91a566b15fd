using TorchSharp;
using WhaleTech.Lab.Mla;

namespace WhaleTech.Tests.Attention;

// The language task's Bayes loss is checked against an independent formula: the posterior predictive as a ratio of
// marginal likelihoods, p(x_{t+1} | x_≤t) = p(x_0..x_{t+1}) / p(x_0..x_t) with p(x_0..x_t) = (1/K) Σ_k Π_s P_k(x_s | x_{s−1})
// (x_0's uniform factor cancels), computed in plain products on short sequences. The two agree to float64 rounding
// over a few dozen products and sums, so 1e-9 is a wide bound.
public class FrontierTasksTests
{
    [Fact]
    public void LanguageBayesLossIsThePosteriorPredictive()
    {
        var lang = new TopicBigramLanguage(vocab: 6, topics: 3, length: 10);
        var (ids, targets, mask) = lang.Batch(5, new Random(3));
        Assert.Equal([5L, 10L], ids.shape);
        Assert.True(targets[.., ..^1].eq(ids[.., 1..]).all().item<bool>());                 // targets are the next tokens
        var x = ids.data<long>().ToArray(); var y = targets.data<long>().ToArray();
        double nll = 0;
        for (int n = 0; n < 5; n++)
        {
            var seq = new List<int> { (int)x[n * 10] };
            for (int t = 0; t < 10; t++) seq.Add((int)y[n * 10 + t]);
            double Marginal(int upto)                                                     // p(x_1..x_upto | x_0), topics uniform
            {
                double s = 0;
                for (int k = 0; k < 3; k++)
                {
                    double p = 1;
                    for (int i = 1; i <= upto; i++) p *= lang.Transition(k, seq[i - 1], seq[i]);
                    s += p / 3;
                }
                return s;
            }
            for (int t = 0; t < 10; t++) nll -= Math.Log(Marginal(t + 1) / Marginal(t));
        }
        Assert.Equal(nll / 50, lang.Bayes(ids, targets, mask).Loss, 9);
        Assert.InRange(lang.Bayes(ids, targets, mask).Accuracy, 0, 1);
    }

    [Fact]
    public void TheLanguageIsFixedAndSequencesFollowTheSeed()
    {
        var a = new TopicBigramLanguage(8, 4, 16);
        var b = new TopicBigramLanguage(8, 4, 16);
        for (int k = 0; k < 4; k++)
        {
            Assert.Equal(1.0, Enumerable.Range(0, 8).Sum(j => a.Transition(k, 2, j)), 12);
            Assert.Equal(a.Transition(k, 2, 5), b.Transition(k, 2, 5));
        }
        Assert.True(a.Batch(4, new Random(1)).Ids.eq(b.Batch(4, new Random(1)).Ids).all().item<bool>());
        Assert.False(a.Batch(4, new Random(1)).Ids.eq(a.Batch(4, new Random(2)).Ids).all().item<bool>());
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => new TopicBigramLanguage(1, 4, 16));
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => new MlaFrontierOptions { TaskKind = "poetry" }.Validate());
    }

    [Fact]
    public void MqarHasZeroBayesLossAndTheFrontierSubtractsTheLanguages()
    {
        var o = new MlaFrontierOptions { Pairs = 2, Queries = 2, Keys = 8, Values = 8 };
        var (ids, targets, mask) = o.Data.Batch(4, new Random(1));
        Assert.Equal(0, o.Data.Bayes(ids, targets, mask).Loss);
        Assert.Equal(16, o.Data.VocabSize);
        var lo = o with { TaskKind = "language", Topics = 2, Length = 12 };
        Assert.Equal(8, lo.Data.VocabSize);
        Assert.Equal(12, lo.SequenceLength);
        using var model = new WhaleTech.Model.DeepSeekLM(MlaFrontier.Config(lo, FrontierVariant.Parse("mqa")));
        var (excess, _) = MlaFrontier.Evaluate(model, lo with { EvalSequences = 64 }, 0, torch.CPU);
        var (eids, et, em) = lo.Data.Batch(64, new Random(10_000));
        double bayes = lo.Data.Bayes(eids, et, em).Loss;
        Assert.InRange(excess, 0.0, Math.Log(8));                         // an untrained model is near uniform: ln 8 − Bayes
        Assert.InRange(excess + bayes, Math.Log(8) - 0.1, Math.Log(8) + 0.1);
    }

    /// <summary>The exact KL against the same independent formula as above: the predictive p(v | x_≤t) as a ratio of
    /// marginal likelihoods. With the model = that predictive the KL is 0; with a uniform model it is ln V − H(p_t), whose
    /// mean over sequences the sampled estimator (ln V − Bayes NLL) matches in expectation. The sampled one's per-sequence
    /// spread gives the tolerance: 4 standard errors.</summary>
    [Fact]
    public void ExactKlIsZeroAtTheBayesPredictorAndTheSampledExcessIsUnbiasedForIt()
    {
        const int V = 5, K = 3, T = 8;
        var lang = new TopicBigramLanguage(vocab: V, topics: K, length: T);
        var (ids, targets, mask) = lang.Batch(4, new Random(7));
        var x = ids.data<long>().ToArray(); var y = targets.data<long>().ToArray();
        var logP = new double[4 * T * V];
        double uniformKl = 0;
        for (int n = 0; n < 4; n++)
        {
            var seq = new List<int> { (int)x[n * T] };
            for (int t = 0; t < T; t++) seq.Add((int)y[n * T + t]);
            double Marginal(IReadOnlyList<int> s, int upto)
            {
                double sum = 0;
                for (int k = 0; k < K; k++)
                {
                    double p = 1;
                    for (int i = 1; i <= upto; i++) p *= lang.Transition(k, s[i - 1], s[i]);
                    sum += p / K;
                }
                return sum;
            }
            for (int t = 0; t < T; t++)
            {
                double entropy = 0;
                for (int v = 0; v < V; v++)
                {
                    var candidate = seq.Take(t + 1).Append(v).ToList();
                    double p = Marginal(candidate, t + 1) / Marginal(seq, t);
                    logP[(n * T + t) * V + v] = Math.Log(p);
                    entropy -= p * Math.Log(p);
                }
                uniformKl += Math.Log(V) - entropy;
            }
        }
        var bayes = torch.tensor(logP, [4, T, V]);
        Assert.Equal(0, lang.BayesLossAndKl(ids, targets, mask, bayes).Kl, 12);
        Assert.Equal(lang.Bayes(ids, targets, mask).Loss, lang.BayesLossAndKl(ids, targets, mask, bayes).BayesLoss);   // the same pass, bit for bit
        Assert.Equal(uniformKl / (4 * T), lang.BayesLossAndKl(ids, targets, mask, torch.full(4, T, V, -Math.Log(V), torch.float64)).Kl, 12);
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => lang.BayesLossAndKl(ids, targets, mask, torch.zeros(4, T, V + 1)));

        // Unbiased: over many sequences the sampled excess of the uniform model agrees with its KL.
        var (bi, bt, bm) = lang.Batch(2000, new Random(11));
        double kl = lang.BayesLossAndKl(bi, bt, bm, torch.full(2000, T, V, -Math.Log(V), torch.float64)).Kl;
        var perSequence = Enumerable.Range(0, 2000).Select(n => Math.Log(V) - lang.Bayes(bi[n..(n + 1)], bt[n..(n + 1)], bm[n..(n + 1)]).Loss).ToArray();
        double se = MathNet.Numerics.Statistics.Statistics.StandardDeviation(perSequence) / Math.Sqrt(2000);
        Assert.InRange(perSequence.Average() - kl, -4 * se, 4 * se);
    }

    /// <summary>On MQAR the Bayes predictor is a point mass on the target, so the KL is the model's NLL there.</summary>
    [Fact]
    public void MqarExactKlIsTheNll()
    {
        var o = new MlaFrontierOptions { Pairs = 2, Queries = 2, Keys = 8, Values = 8 };
        var (ids, targets, mask) = o.Data.Batch(6, new Random(2));
        torch.manual_seed(3);
        var logProbs = torch.nn.functional.log_softmax(torch.randn(6, ids.shape[1], 16), -1);
        double nll = torch.nn.functional.cross_entropy(logProbs[mask], targets[mask]).item<float>();
        Assert.Equal(nll, o.Data.BayesLossAndKl(ids, targets, mask, logProbs).Kl, 5);
    }
}
