// Standard attention (MHA / GQA / MQA) → multi-head latent attention, on a whole DeepSeekLM, written into
// WhaleTech's (= Hugging Face DeepSeek-V3's) MLA layout: q_proj [H·(Dn+Dr), D], kv_a_proj_with_mqa [Dc+Dr, D],
// kv_a_layernorm [Dc], kv_b_proj [H·(Dn+Dv), Dc], o_proj [D, H·Dv]. Everything else is copied.
//
// TransMLA (Meng et al. 2025) and MHA2MLA (Ji et al. 2025) in one construction, per layer:
//
//   1. Partial RoPE. WhaleTech's MLA rotates ONE key k^R of Dr dims shared by all heads, with the frequencies
//      ω'_m = θ'^(−2m/Dr). Choose Dr/2 of the Dh/2 rotation pairs of the source heads (strategy: high = the
//      fastest, low = the slowest, uniform = every s-th, norm = MHA2MLA's 2-norm contribution (§3.1): the largest
//      Σ_layers Σ_h E‖q_{h,pair}‖·E‖k_{g(h),pair}‖, measured on calibration tokens when given (the paper's form,
//      summed over heads and layers because one rotary table serves them all), else its weight-space proxy
//      Σ‖W_Q,pair‖·‖W_K,pair‖ (isotropic inputs)). θ' is fitted so ω'_m match the chosen ω_{i_m}:
//      exact for high (θ' = θ^(Dr/Dh)) and uniform (θ' = θ), a least-squares fit in log-frequency otherwise.
//   2. Sharing (RoRoPE, TransMLA §4). For each chosen pair i the Hkv source keys k_{g,i} ∈ ℝ² are mixed by the top
//      eigenvector u of their Gram matrix G_gg' = Σ_c ⟨W_K[g,2i+c], W_K[g',2i+c]⟩. u acts identically on both
//      components of the pair, so it commutes with the 2-D RoPE rotation: k^R_i = Σ_g u_g k_{g,i} is exact RoPE,
//      and head h's rope query is u_{g(h)} q_{h,i}. The residual k_{g,i} − u_g k^R_i joins the no-RoPE part.
//      With Hkv = 1 (MQA) u = ±1 and the residual is zero.
//   3. Latent. The no-RoPE keys (all Dh dims of each KV head, residuals in the chosen pairs) and the values are
//      M = [W_K^nope; W_V] (2·Hkv·Dh × D). Joint SVD: M ≈ A B, rank Dc (B → kv_a_proj latent rows, A → kv_b_proj);
//      separate SVD: W_K^nope and W_V factored apart, ranks split by their numerical ranks. rank(M) ≤ 2·Hkv·Dh − Dr,
//      so at Dc = 2·Hkv·Dh − Dr (the source's KV bytes) the latent is lossless.
//   4. The latent RMSNorm. MLA normalizes c^KV (kv_a_layernorm, ε = 1e-6), a per-token nonlinearity the source
//      lacks. Linearized (default): kv_a's latent rows are scaled by α so that mean(c²) ≤ ε·2⁻³⁰ for every input
//      the block can feed (‖x‖ ≤ max|w_in|·√D after input_layernorm), and the norm weight is √ε/α; then
//      RMSNorm(c) = c·√ε/α/√(mean(c²)+ε) equals B x to fp32 rounding. This is exact but its tiny α does not survive
//      an AdamW step (updates are ~lr, not ~α), so fine-tuning uses Rms: α = 1 and the norm weight set to the
//      expected rms of B x (isotropic inputs of the input_layernorm's scale) — approximate, the norm is active.
//   5. Scale. Source scores use 1/√Dh, MLA 1/√(Dn+Dr): the queries are multiplied by √(Dn+Dr)/√Dh.
//
// Exact (fp32 rounding) iff: Hkv = 1, every pair is RoPE'd (Dr = Dh), Dc ≥ rank(W_V) and the norm is linearized —
// i.e. MQA → MLA at the same KV bytes. GQA with Hkv > 1 cannot be exact in this layout: k^R is one key with Dr/2
// distinct frequencies, GQA's RoPE needs Hkv keys per frequency; the residual keys lose their rotation
// (error measured by the tests and the Lab experiment). MHA is GQA with Hkv = H.
//
// Shapes: H query heads, Hkv KV heads (group g(h) = h / (H/Hkv)), Dh head dim, D hidden, Dc kv_lora_rank,
// Dr qk_rope_head_dim, Dn qk_nope_head_dim (= Dh), Dv v_head_dim (= Dh).
using TorchSharp;
using WhaleTech.Attention;
using WhaleTech.Core;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Model;

/// <summary>Which rotation pairs keep RoPE (MHA2MLA §3.1's partial-RoPE strategies).</summary>
public enum RopeSelection { High, Low, Uniform, Norm }

/// <summary>How the no-RoPE keys and the values are factored into the latent (MHA2MLA §3.2).</summary>
public enum LatentFactorization { Joint, Separate }

/// <summary>How the converted model's kv_a_layernorm is set (see the file header, step 4).</summary>
public enum LatentNormMode { Linearized, Rms }

public sealed record MlaConversionOptions
{
    /// <summary>Dc; null = 2·Hkv·Dh − Dr, the source's KV elements per token.</summary>
    public int? KvLoraRank { get; init; }
    /// <summary>Dr; null = Dh (every pair keeps RoPE).</summary>
    public int? RopeDims { get; init; }
    public RopeSelection Strategy { get; init; } = RopeSelection.High;
    public LatentFactorization Factorization { get; init; } = LatentFactorization.Joint;
    public LatentNormMode Norm { get; init; } = LatentNormMode.Linearized;
    /// <summary>[B, T] token ids the 2-norm strategy measures ‖q‖·‖k‖ on (MHA2MLA's calibration); null = the
    /// weight-space proxy. Ignored by the other strategies.</summary>
    public Tensor? CalibrationIds { get; init; }

    public static RopeSelection ParseStrategy(string s) => s.Trim().ToLowerInvariant() switch
    {
        "high" or "high-frequency" => RopeSelection.High,
        "low" or "low-frequency" => RopeSelection.Low,
        "uniform" => RopeSelection.Uniform,
        "norm" or "2-norm" => RopeSelection.Norm,
        _ => throw new WhaleArgumentException("strategy", s, "must be high, low, uniform or 2-norm"),
    };

    public static LatentFactorization ParseFactorization(string s) => s.Trim().ToLowerInvariant() switch
    {
        "joint" => LatentFactorization.Joint,
        "separate" or "split" => LatentFactorization.Separate,
        _ => throw new WhaleArgumentException("svd", s, "must be joint or separate"),
    };
}

/// <summary>What a conversion did: the target shape, the RoPE pairs kept, whether the result is exact and the
/// per-layer relative Frobenius error of the latent factorization ‖M − AB‖/‖M‖.</summary>
public sealed record MlaConversionReport(
    string SourceAttention, int KvHeads, int HeadDim, int KvLoraRank, int RopeDims, int NopeDims, double RopeTheta,
    int[] RopePairs, bool FrequenciesExact, bool Exact, long SourceKvElementsPerTokenPerLayer, long TargetKvElementsPerTokenPerLayer,
    double[] LatentRelativeError, double[] ResidualKeyFraction)
{
    /// <summary>What ranked the RoPE pairs: "activations (B×T tokens)", "weights" or the fixed strategy's name.</summary>
    public string PairScore { get; init; } = "";
}

public static class MlaConversion
{
    /// <summary>Converts a standard-attention model into MLA (see the file header). The source is not changed.</summary>
    public static (DeepSeekLM Model, MlaConversionReport Report) FromStandard(DeepSeekLM source, MlaConversionOptions? options = null)
    {
        var o = options ?? new MlaConversionOptions();
        var cfg = source.Config;
        if (AttentionVariants.Get(cfg.Attention) is not StandardAttentionVariant)
            throw new WhaleArgumentException("whaletech_attention", cfg.Attention, "must be a standard attention (mha, gqa, mqa) to convert to MLA");
        if (cfg.AttentionBias) throw new WhaleArgumentException("attention_bias", true, "must be false to convert to MLA (MLA's q_proj has no bias)");
        if (cfg.NumNextnPredictLayers > 0) throw new WhaleArgumentException("num_nextn_predict_layers", cfg.NumNextnPredictLayers, "must be 0 to convert to MLA");
        int H = cfg.NumAttentionHeads, Hkv = StandardAttentionVariant.KvHeadsOf(cfg), Dh = cfg.StandardHeadDim, D = cfg.HiddenSize, L = cfg.NumHiddenLayers;
        int G = H / Hkv;
        int Dr = o.RopeDims ?? Dh;
        if (Dr < 2 || Dr > Dh || Dr % 2 != 0) throw new WhaleArgumentException("rope dims", Dr, $"must be even and in [2, head dim {Dh}]");
        int sourceKv = 2 * Hkv * Dh;
        int Dc = o.KvLoraRank ?? sourceKv - Dr;
        Guard.InRange("kv lora rank", Dc, 1, 2 * Hkv * Dh);
        if (o.Strategy == RopeSelection.Norm && o.CalibrationIds is { } calibration) CheckCalibration(cfg, calibration);
        int Dn = Dh, Dv = Dh;

        using var noGrad = torch.no_grad();
        var (report, dst) = Build(source, o, H, Hkv, G, Dh, D, L, Dr, Dc, Dn, Dv, sourceKv);
        try
        {
            var model = new DeepSeekLM(report.Target);
            var dtype = source.Embedding.weight!.dtype;
            var device = source.Embedding.weight!.device;
            foreach (var (name, t) in model.state_dict())
            {
                if (!dst.TryGetValue(name, out var value)) throw new WhaleException($"MLA conversion produced no tensor {name}");
                if (!value.shape.SequenceEqual(t.shape)) throw new WhaleException($"MLA conversion: {name} has shape [{string.Join(", ", value.shape)}], expected [{string.Join(", ", t.shape)}]");
                t.copy_(value);
            }
            model.to(device);
            if (dtype != ScalarType.Float32) model.to(dtype);
            return (model, report.Report);
        }
        finally { foreach (var t in dst.Values) t.Dispose(); }
    }

    static ((ModelConfig Target, MlaConversionReport Report), Dictionary<string, Tensor>) Build(DeepSeekLM source, MlaConversionOptions o,
        int H, int Hkv, int G, int Dh, int D, int L, int Dr, int Dc, int Dn, int Dv, int sourceKv)
    {
        var cfg = source.Config;
        using var scope = torch.NewDisposeScope();
        var src = source.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().to_type(ScalarType.Float64));
        Tensor W(int layer, string name) => src[$"model.layers.{layer}.self_attn.{name}.weight"];

        // 1. RoPE pairs (shared by all layers: the rotary table, hence θ', is model-wide).
        int pairs = Dh / 2, keep = Dr / 2;
        int[] chosen = o.Strategy switch
        {
            RopeSelection.High => Enumerable.Range(0, keep).ToArray(),
            RopeSelection.Low => Enumerable.Range(pairs - keep, keep).ToArray(),
            RopeSelection.Uniform => Enumerable.Range(0, keep).Select(m => (int)Math.Round(m * (double)pairs / keep)).ToArray(),
            _ => TopPairs(o.CalibrationIds is { } ids ? ActivationNormScores(source, ids, W, H, Hkv, G, Dh, L) : WeightNormScores(W, H, G, Dh, D, L), keep),
        };
        string pairScore = o.Strategy != RopeSelection.Norm ? o.Strategy.ToString().ToLowerInvariant()
            : o.CalibrationIds is { } c ? $"activations ({c.shape[0]}×{c.shape[1]} tokens)" : "weights";
        double logTheta = Math.Log(cfg.RopeTheta);
        double sumMI = 0, sumMM = 0;
        for (int m = 0; m < keep; m++) { sumMI += m * (double)chosen[m]; sumMM += (double)m * m; }
        double thetaPrime = sumMM == 0 ? cfg.RopeTheta : Math.Exp(logTheta * Dr / Dh * sumMI / sumMM);
        bool freqExact = Enumerable.Range(0, keep).All(m =>
            Math.Abs(-2.0 * m / Dr * Math.Log(thetaPrime) - (-2.0 * chosen[m] / Dh * logTheta)) < 1e-9);
        if (cfg.RopeScaling is not null && (Dr != Dh || Math.Abs(thetaPrime - cfg.RopeTheta) > 1e-9 * cfg.RopeTheta))
            throw new WhaleArgumentException("rope_scaling", "yarn", "is only convertible with every pair RoPE'd (rope dims = head dim)");

        var target = cfg with
        {
            Attention = "mla", KvLoraRank = Dc, QLoraRank = null, QkNopeHeadDim = Dn, QkRopeHeadDim = Dr, VHeadDim = Dv,
            NumKeyValueHeads = H, HeadDim = null, RopeTheta = thetaPrime,
        };
        var dst = new Dictionary<string, Tensor>();
        foreach (var (k, v) in src) if (!k.Contains(".self_attn.", StringComparison.Ordinal)) dst[k] = v;
        var latentErr = new double[L];
        var residualFrac = new double[L];
        double kappa = Math.Sqrt(Dn + Dr) / Math.Sqrt(Dh);
        double eps = MultiHeadLatentAttention.LatentNormEps;
        bool lossless = true;

        for (int layer = 0; layer < L; layer++)
        {
            var wq = W(layer, "q_proj").view(H, Dh, D);
            var wk = W(layer, "k_proj").view(Hkv, Dh, D).clone();
            var wv = W(layer, "v_proj").view(Hkv, Dh, D);
            var wo = W(layer, "o_proj");
            // 2. shared RoPE key per chosen pair, residuals stay in wk (→ no-RoPE keys)
            var wkR = torch.zeros(Dr, D, dtype: ScalarType.Float64);
            var qR = torch.zeros(H, Dr, D, dtype: ScalarType.Float64);
            double keyEnergy = wk.pow(2).sum().item<double>();
            for (int m = 0; m < keep; m++)
            {
                int i = chosen[m];
                var kp = wk.narrow(1, 2 * i, 2);                                          // [Hkv, 2, D]
                var flat = kp.reshape(Hkv, 2 * D);
                var (_, vecs) = torch.linalg.eigh(torch.matmul(flat, flat.t()));           // ascending
                var u = vecs.select(1, Hkv - 1);                                          // [Hkv] top eigenvector
                var kr = torch.einsum("g,gcd->cd", u, kp);                                // [2, D]
                wkR.narrow(0, 2 * m, 2).copy_(kr);
                kp.sub_(u.view(Hkv, 1, 1) * kr.unsqueeze(0));                              // residual, in place in wk
                for (int h = 0; h < H; h++)
                    qR[h].narrow(0, 2 * m, 2).copy_(wq[h].narrow(0, 2 * i, 2) * (u[h / G].item<double>() * kappa));
            }
            residualFrac[layer] = keyEnergy == 0 ? 0 : wk.pow(2).sum().item<double>() / keyEnergy;
            // 3. latent factorization of M = [W_K^nope; W_V]
            var mk = wk.reshape(Hkv * Dh, D);
            var mv = wv.reshape(Hkv * Dh, D);
            var (a, b) = o.Factorization == LatentFactorization.Joint ? Factor(torch.cat([mk, mv], 0), Dc) : FactorSeparate(mk, mv, Dc);
            var mFull = torch.cat([mk, mv], 0);
            double mNorm = mFull.norm().item<double>();
            latentErr[layer] = mNorm == 0 ? 0 : (mFull - torch.matmul(a, b)).norm().item<double>() / mNorm;
            if (latentErr[layer] > 1e-9) lossless = false;
            // 4. latent norm
            var wIn = src[$"model.layers.{layer}.input_layernorm.weight"];
            Tensor normWeight;
            if (o.Norm == LatentNormMode.Linearized)
            {
                double sigma = Math.Max(torch.linalg.svdvals(b).max().item<double>(), 1e-30);
                double wMax = Math.Max(wIn.abs().max().item<double>(), 1e-30);
                double alpha = Math.Sqrt(eps * Math.Pow(2, -30) * Dc / D) / (sigma * wMax);
                b = b * alpha;
                normWeight = torch.ones(Dc, dtype: ScalarType.Float64) * (Math.Sqrt(eps) / alpha);
            }
            else
            {
                double wRms = Math.Sqrt(wIn.pow(2).mean().item<double>());
                double expected = b.norm().item<double>() * wRms / Math.Sqrt(Dc);          // E rms(Bx), x isotropic with rms wRms
                normWeight = torch.ones(Dc, dtype: ScalarType.Float64) * Math.Max(expected, 1e-12);
            }
            // kv_b_proj per head [W_UK (Dn rows) | W_UV (Dv rows)] from A's rows of the head's group
            var aK = a.narrow(0, 0, Hkv * Dh).view(Hkv, Dh, Dc);
            var aV = a.narrow(0, Hkv * Dh, Hkv * Dh).view(Hkv, Dh, Dc);
            var kvb = torch.cat(Enumerable.Range(0, H).Select(h => torch.cat([aK[h / G], aV[h / G]], 0)).ToArray(), 0); // [H·(Dn+Dv), Dc]
            var qp = torch.cat(Enumerable.Range(0, H).Select(h => torch.cat([wq[h] * kappa, qR[h]], 0)).ToArray(), 0);   // [H·(Dn+Dr), D]
            string p = $"model.layers.{layer}.self_attn.";
            dst[p + "q_proj.weight"] = qp;
            dst[p + "kv_a_proj_with_mqa.weight"] = torch.cat([b, wkR], 0);
            dst[p + "kv_a_layernorm.weight"] = normWeight;
            dst[p + "kv_b_proj.weight"] = kvb;
            dst[p + "o_proj.weight"] = wo;
        }

        bool exact = Hkv == 1 && Dr == Dh && freqExact && lossless && o.Norm == LatentNormMode.Linearized;
        var report = new MlaConversionReport(cfg.Attention, Hkv, Dh, Dc, Dr, Dn, thetaPrime, chosen, freqExact, exact,
            sourceKv, Dc + Dr, latentErr, residualFrac) { PairScore = pairScore };
        var output = dst.ToDictionary(kv => kv.Key, kv => kv.Value.to_type(ScalarType.Float32).MoveToOuterDisposeScope());
        return ((target, report), output);
    }

    /// <summary>Weight-space 2-norm contribution of each rotation pair, Σ_layers Σ_h ‖W_Q[h,pair]‖_F·‖W_K[g(h),pair]‖_F
    /// (MHA2MLA's ‖q_i‖‖k_i‖ with isotropic inputs). Returns [Dh/2].</summary>
    static double[] WeightNormScores(Func<int, string, Tensor> w, int H, int G, int Dh, int D, int L)
    {
        var score = new double[Dh / 2];
        for (int layer = 0; layer < L; layer++)
        {
            var q = w(layer, "q_proj").view(H, Dh / 2, 2 * D).norm(dim: -1);            // [H, Dh/2]
            var k = w(layer, "k_proj").view(-1, Dh / 2, 2 * D).norm(dim: -1);           // [Hkv, Dh/2]
            AddHeadProducts(score, q, k, H, G, Dh);
        }
        return score;
    }

    /// <summary>MHA2MLA's 2-norm contribution (§3.1) on calibration tokens: for each layer, the source's own queries and
    /// keys of <paramref name="ids"/> (before RoPE — a rotation keeps each pair's norm), the mean over tokens of each
    /// pair's ‖q_{h,i}‖ times the mean of ‖k_{g(h),i}‖, summed over heads and layers. Returns [Dh/2].</summary>
    static double[] ActivationNormScores(DeepSeekLM source, Tensor ids, Func<int, string, Tensor> w, int H, int Hkv, int G, int Dh, int L)
    {
        var score = new double[Dh / 2];
        bool wasTraining = source.training;
        source.eval();
        try
        {
            using var scope = torch.NewDisposeScope();
            var device = source.Embedding.weight!.device;
            var x = ids.to(device);
            long B = x.shape[0], T = x.shape[1];
            var positions = torch.arange(T, device: device).unsqueeze(0).expand(B, T);
            var ctx = new AttentionContext
            {
                Positions = positions, Rotary = source.Rotary.Tables(positions),
                Mask = AttentionContext.BuildMask(torch.ones(B, T, dtype: ScalarType.Bool, device: device), 0, T),
            };
            var h = source.Embedding.forward(x);                                                 // [B, T, D]
            for (int layer = 0; layer < L; layer++)
            {
                var block = source.Layers[layer];
                var a = block.InputLayerNorm.forward(h).cpu().to_type(ScalarType.Float64);     // [B, T, D]
                var q = torch.nn.functional.linear(a, w(layer, "q_proj")).view(B, T, H, Dh / 2, 2).norm(dim: -1).mean([0, 1]);    // [H, Dh/2]
                var k = torch.nn.functional.linear(a, w(layer, "k_proj")).view(B, T, Hkv, Dh / 2, 2).norm(dim: -1).mean([0, 1]);  // [Hkv, Dh/2]
                AddHeadProducts(score, q, k, H, G, Dh);
                h = block.forward(h, ctx);
            }
        }
        finally { source.train(wasTraining); }
        return score;
    }

    /// <summary>Calibration tokens must be a non-empty [batch, tokens] id tensor within the vocabulary and the position range
    /// (checked before any conversion work).</summary>
    static void CheckCalibration(ModelConfig cfg, Tensor ids)
    {
        if (ids.dim() != 2 || ids.shape[0] < 1 || ids.shape[1] < 1)
            throw new WhaleArgumentException("calibration ids", "shape [" + string.Join(", ", ids.shape) + "]", "must be a non-empty [batch, tokens] tensor of token ids");
        if (ids.shape[1] > cfg.MaxPositionEmbeddings)
            throw new WhaleArgumentException("calibration ids", $"{ids.shape[1]} tokens", $"must be at most max_position_embeddings = {cfg.MaxPositionEmbeddings}");
        long lo = ids.min().item<long>(), hi = ids.max().item<long>();
        if (lo < 0 || hi >= cfg.VocabSize)
            throw new WhaleArgumentException("calibration ids", $"range [{lo}, {hi}]", $"must be token ids in [0, {cfg.VocabSize})");
    }

    static void AddHeadProducts(double[] score, Tensor q, Tensor k, int H, int G, int Dh)
    {
        var qa = q.contiguous().data<double>().ToArray();       // [H, Dh/2] row-major
        var ka = k.contiguous().data<double>().ToArray();       // [Hkv, Dh/2]
        int P = Dh / 2;
        for (int h = 0; h < H; h++)
            for (int i = 0; i < P; i++) score[i] += qa[h * P + i] * ka[(h / G) * P + i];
    }

    /// <summary>The <paramref name="keep"/> highest-scoring pairs, ascending.</summary>
    static int[] TopPairs(double[] score, int keep) =>
        Enumerable.Range(0, score.Length).OrderByDescending(i => score[i]).Take(keep).Order().ToArray();

    /// <summary>Best rank-r factorization M ≈ A B (Eckart–Young): B = S_r V_rᵀ [r, D], A = U_r [rows, r]; exact copy
    /// (A = [I | 0], B = [M; 0]) when r ≥ rows.</summary>
    public static (Tensor A, Tensor B) Factor(Tensor m, int r)
    {
        long rows = m.shape[0], cols = m.shape[1];
        if (r >= rows)
        {
            var a = torch.zeros(rows, r, dtype: m.dtype);
            a.narrow(1, 0, rows).copy_(torch.eye(rows, dtype: m.dtype));
            return (a, torch.cat([m, torch.zeros(r - rows, cols, dtype: m.dtype)], 0));
        }
        var (u, s, vh) = torch.linalg.svd(m, fullMatrices: false);
        int k = (int)Math.Min(r, s.shape[0]);
        var aOut = torch.zeros(rows, r, dtype: m.dtype);
        var bOut = torch.zeros(r, cols, dtype: m.dtype);
        aOut.narrow(1, 0, k).copy_(u.narrow(1, 0, k));
        bOut.narrow(0, 0, k).copy_(s.narrow(0, 0, k).unsqueeze(1) * vh.narrow(0, 0, k));
        return (aOut, bOut);
    }

    /// <summary>Keys and values factored apart (MHA2MLA's SVD_split): ranks rk + rv = r, each at most its numerical rank
    /// when the other can use the rest; A is block-diagonal.</summary>
    static (Tensor A, Tensor B) FactorSeparate(Tensor mk, Tensor mv, int r)
    {
        int rankK = NumericalRank(mk), rankV = NumericalRank(mv);
        int rk = Math.Min(rankK, r / 2), rv = Math.Min(rankV, r - rk);
        rk = Math.Min(r - rv, Math.Max(rk, 0));
        if (rk + rv < r) rv = r - rk;
        var (ak, bk) = rk > 0 ? Factor(mk, rk) : (torch.zeros(mk.shape[0], 0, dtype: mk.dtype), torch.zeros(0, mk.shape[1], dtype: mk.dtype));
        var (av, bv) = Factor(mv, rv);
        var a = torch.zeros(mk.shape[0] + mv.shape[0], r, dtype: mk.dtype);
        if (rk > 0) a.narrow(0, 0, mk.shape[0]).narrow(1, 0, rk).copy_(ak);
        a.narrow(0, mk.shape[0], mv.shape[0]).narrow(1, rk, rv).copy_(av);
        return (a, torch.cat([bk, bv], 0));
    }

    static int NumericalRank(Tensor m)
    {
        var s = torch.linalg.svdvals(m);
        double top = s.numel() == 0 ? 0 : s.max().item<double>();
        return top == 0 ? 0 : (int)s.gt(top * 1e-10).sum().item<long>();
    }
}
