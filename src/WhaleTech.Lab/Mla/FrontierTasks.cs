// The tasks the MLA frontier trains on, each with its Bayes-optimal loss so results are excess loss over Bayes.
//
//   mqar      multi-query associative recall (Arora et al. 2023; MlaQuality.Batch): the queried values are determined
//             by the context, so the Bayes loss is 0 and accuracy has ceiling 100 %. It tests how much the cache can
//             hold and retrieve exactly.
//   language  a synthetic language whose entropy is known sequence by sequence: K "topics", each a bigram chain over
//             V tokens with rows drawn once from Dirichlet(α) (the language is fixed by LanguageSeed; the training
//             and eval seeds only draw sequences). A sequence picks a topic k uniformly, x_0 uniformly, then
//             x_t ~ P_k(· | x_{t−1}). The Bayes predictor must infer the topic from the whole prefix:
//                 p(x_{t+1} | x_≤t) = Σ_k w_k(t) P_k(x_{t+1} | x_t),   w_k(t) ∝ Π_{s=1..t} P_k(x_s | x_{s−1}),
//             which the eval computes exactly per sequence (forward recursion in log space), so excess loss = model
//             NLL − Bayes NLL on the same tokens. Unlike MQAR it is graded (no ceiling at 0 nats a small model can
//             hit by memorizing) and tests aggregation of evidence over the context rather than exact lookup.
//
// Two estimators of the excess loss on an eval set. The sampled one, mean over scored positions of
//     log p(x_{t+1} | x_≤t) − log q(x_{t+1} | x_≤t)                    (what the frontier has always reported),
// and the exact KL, the same mean with the next token integrated out (Rao–Blackwell):
//     KL_t = Σ_v p(v | x_≤t) (log p(v | x_≤t) − log q(v | x_≤t)).
// Both have expectation E_ctx KL(p ‖ q); the KL's eval-set noise comes from the contexts only, not from the draw of the
// scored token, so it is far smaller (FrontierEvalNoise.cs measures both). On MQAR p is a point mass: the two coincide.
//
// Shapes: B batch, T sequence, V vocabulary, K topics.
using MathNet.Numerics.Distributions;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Lab.Mla;

/// <summary>A frontier task: training/eval batches and the Bayes-optimal loss of a batch.</summary>
public interface IFrontierTask
{
    int VocabSize { get; }
    int SequenceLength { get; }
    /// <summary>ids [B, T] long, targets [B, T] long, mask [B, T] bool (the positions that are scored).</summary>
    (Tensor Ids, Tensor Targets, Tensor Mask) Batch(int batch, Random rng);
    /// <summary>The Bayes-optimal predictor on the masked positions of a batch from <see cref="Batch"/>: its mean NLL
    /// (nats) and its top-1 accuracy.</summary>
    (double Loss, double Accuracy) Bayes(Tensor ids, Tensor targets, Tensor mask);
    /// <summary>In one pass of the Bayes predictor: its mean NLL over the masked positions (<see cref="Bayes"/>'s Loss)
    /// and the exact excess loss (file header), the mean of KL(Bayes ‖ model) there, given the model's
    /// log-probabilities <paramref name="logProbs"/> [B, T, V] on this batch.</summary>
    (double BayesLoss, double Kl) BayesLossAndKl(Tensor ids, Tensor targets, Tensor mask, Tensor logProbs);
    /// <summary>One sentence for the results' Task line.</summary>
    string Describe();
}

/// <summary>MQAR (see the file header); the Bayes loss is 0.</summary>
public sealed class MqarFrontierTask(MlaQualityOptions mqar) : IFrontierTask
{
    public int VocabSize => mqar.Keys + mqar.Values;
    public int SequenceLength => 2 * (mqar.Pairs + mqar.Queries);
    public (Tensor Ids, Tensor Targets, Tensor Mask) Batch(int batch, Random rng) => MlaQuality.Batch(mqar, batch, rng);
    public (double Loss, double Accuracy) Bayes(Tensor ids, Tensor targets, Tensor mask) => (0, 1);
    public (double BayesLoss, double Kl) BayesLossAndKl(Tensor ids, Tensor targets, Tensor mask, Tensor logProbs)   // p is a point mass: KL = NLL
    {
        using var scope = NewDisposeScope();
        var picked = logProbs.to_type(ScalarType.Float64).gather(-1, targets.to(logProbs.device).unsqueeze(-1)).squeeze(-1);
        return (0, -picked[mask.to(logProbs.device)].mean().item<double>());
    }
    public string Describe() => $"MQAR, {mqar.Pairs} pairs, {mqar.Queries} queries, {mqar.Keys} keys × {mqar.Values} values (T = {SequenceLength}). Bayes-optimal loss is 0, so eval loss = excess loss";
}

/// <summary>The topic-mixture bigram language (see the file header).</summary>
public sealed class TopicBigramLanguage : IFrontierTask
{
    public const int LanguageSeed = 20_250_701;
    readonly double[][,] _p;      // [K][V, V] row-stochastic: P_k(next | previous)
    readonly double _alpha;

    public int VocabSize { get; }
    public int SequenceLength { get; }
    public int Topics { get; }

    public TopicBigramLanguage(int vocab, int topics, int length, double alpha = 0.5, int languageSeed = LanguageSeed)
    {
        Guard.InRange("symbols", vocab, 2, 256);
        Guard.InRange("topics", topics, 1, 64);
        Guard.InRange("length", length, 2, 4096);
        Guard.Positive("alpha", alpha);
        VocabSize = vocab; Topics = topics; SequenceLength = length; _alpha = alpha;
        var rng = new Random(languageSeed);
        _p = new double[topics][,];
        for (int k = 0; k < topics; k++)
        {
            _p[k] = new double[vocab, vocab];
            for (int a = 0; a < vocab; a++)
            {
                double sum = 0;
                for (int b = 0; b < vocab; b++) sum += _p[k][a, b] = Math.Max(Gamma.Sample(rng, alpha, 1.0), 1e-300);
                for (int b = 0; b < vocab; b++) _p[k][a, b] /= sum;
            }
        }
    }

    /// <summary>P_k(b | a).</summary>
    public double Transition(int topic, int a, int b) => _p[topic][a, b];

    public (Tensor Ids, Tensor Targets, Tensor Mask) Batch(int batch, Random rng)
    {
        int T = SequenceLength, V = VocabSize;
        var x = new long[batch * (T + 1)];                         // T + 1 tokens: ids are 0..T−1, targets 1..T
        for (int n = 0; n < batch; n++)
        {
            int k = rng.Next(Topics);
            int prev = rng.Next(V);
            x[n * (T + 1)] = prev;
            for (int t = 1; t <= T; t++)
            {
                double u = rng.NextDouble(), c = 0;
                int next = V - 1;
                for (int b = 0; b < V; b++) { c += _p[k][prev, b]; if (u < c) { next = b; break; } }
                x[n * (T + 1) + t] = prev = next;
            }
        }
        using var all = tensor(x, [batch, T + 1]);
        return (all.narrow(1, 0, T).contiguous(), all.narrow(1, 1, T).contiguous(), ones(batch, T, dtype: ScalarType.Bool));
    }

    /// <summary>The exact posterior-predictive NLL and top-1 accuracy over the masked positions.</summary>
    public (double Loss, double Accuracy) Bayes(Tensor ids, Tensor targets, Tensor mask)
    {
        double nll = 0, correct = 0; long count = 0;
        Posterior(ids, targets, mask, (row, target, pred, z) =>
        {
            nll -= Math.Log(pred[target] / z);
            int arg = 0;
            for (int b = 1; b < pred.Length; b++) if (pred[b] > pred[arg]) arg = b;
            correct += arg == target ? 1 : 0;
            count++;
        });
        return count == 0 ? (0, 1) : (nll / count, correct / count);
    }

    /// <summary>The Bayes NLL and the mean KL(Bayes ‖ model) over the masked positions (file header); logProbs [B, T, V].</summary>
    public (double BayesLoss, double Kl) BayesLossAndKl(Tensor ids, Tensor targets, Tensor mask, Tensor logProbs)
    {
        int V = VocabSize;
        if (logProbs.ndim != 3 || logProbs.shape[0] != ids.shape[0] || logProbs.shape[1] != ids.shape[1] || logProbs.shape[2] != V)
            throw new WhaleArgumentException("logProbs", string.Join("×", logProbs.shape), $"must be [B, T, V] = [{ids.shape[0]}, {ids.shape[1]}, {V}]");
        double[] q;
        using (var cpu = logProbs.to_type(ScalarType.Float64).cpu().contiguous()) q = cpu.data<double>().ToArray();
        double nll = 0, kl = 0; long count = 0;
        Posterior(ids, targets, mask, (row, target, pred, z) =>
        {
            nll -= Math.Log(pred[target] / z);
            for (int b = 0; b < V; b++)
            {
                double p = pred[b] / z;
                if (p > 0) kl += p * (Math.Log(p) - q[row * V + b]);
            }
            count++;
        });
        return count == 0 ? (0, 0) : (nll / count, kl / count);
    }

    /// <summary>The forward recursion of the Bayes predictor (file header): at every masked position, calls
    /// <paramref name="visit"/>(row = n·T + t, target, pred, z) with the unnormalized posterior predictive pred [V] (Σ = z).</summary>
    void Posterior(Tensor ids, Tensor targets, Tensor mask, Action<int, int, double[], double> visit)
    {
        int B = (int)ids.shape[0], T = (int)ids.shape[1], V = VocabSize, K = Topics;
        var x = ids.cpu().contiguous().data<long>().ToArray();
        var y = targets.cpu().contiguous().data<long>().ToArray();
        var m = mask.cpu().contiguous().data<bool>().ToArray();
        var logW = new double[K];
        var pred = new double[V];
        for (int n = 0; n < B; n++)
        {
            Array.Fill(logW, 0.0);                                  // x_0 is uniform under every topic: no evidence yet
            for (int t = 0; t < T; t++)
            {
                int prev = (int)x[n * T + t], target = (int)y[n * T + t];
                if (m[n * T + t])
                {
                    double max = logW.Max(), z = 0;
                    Array.Clear(pred);
                    for (int k = 0; k < K; k++)
                    {
                        double w = Math.Exp(logW[k] - max);
                        z += w;
                        for (int b = 0; b < V; b++) pred[b] += w * _p[k][prev, b];
                    }
                    visit(n * T + t, target, pred, z);
                }
                for (int k = 0; k < K; k++) logW[k] += Math.Log(_p[k][prev, target]);     // the target is the next input
            }
        }
    }

    public string Describe() => $"topic-mixture bigram language, {Topics} topics × {VocabSize} symbols, Dirichlet(α = {_alpha}) rows, T = {SequenceLength}; every position scored. The Bayes-optimal loss is computed exactly per eval sequence (topic posterior from the prefix) and subtracted: excess loss = eval NLL − Bayes NLL";
}
