// The answer format and its parsers. The policy writes an optional reasoning span and then the answer:
//     [<think>…</think>]<answer>…</answer><eos>
// (DeepSeek-R1 §2.2.2 template, with the tags shortened to what a character model can learn quickly).
// Nothing here throws on any model output: every parser returns null / false for text it cannot read.
namespace WhaleTech.Grpo;

public static class PromptTemplate
{
    public const string AnswerOpen = "<answer>", AnswerClose = "</answer>";
    public const string ThinkOpen = "<think>", ThinkClose = "</think>";

    /// <summary>The prompt text for a question (the model sees &lt;bos&gt; + this).</summary>
    public static string Prompt(MathProblem p) => p.Question;

    /// <summary>The completion text that states <paramref name="answer"/> in the expected format.</summary>
    public static string FormatAnswer(string answer, string? reasoning = null)
        => (reasoning is null ? "" : ThinkOpen + reasoning + ThinkClose) + AnswerOpen + answer + AnswerClose;

    /// <summary>Every character prompts and solutions of the built-in tasks can contain.</summary>
    public static readonly string Alphabet = new(("0123456789+-*/=()<>,;:. \n" + AnswerOpen + AnswerClose + ThinkOpen + ThinkClose + "x").Distinct().ToArray());
}

public static class AnswerParser
{
    /// <summary>The text inside the last &lt;answer&gt;…&lt;/answer&gt; pair, trimmed; null when there is none.</summary>
    public static string? ExtractAnswer(string? completion)
    {
        if (string.IsNullOrEmpty(completion)) return null;
        int close = completion.LastIndexOf(PromptTemplate.AnswerClose, StringComparison.Ordinal);
        if (close < 0) return null;
        int open = completion.LastIndexOf(PromptTemplate.AnswerOpen, close, StringComparison.Ordinal);
        if (open < 0) return null;
        int start = open + PromptTemplate.AnswerOpen.Length;
        return completion[start..close].Trim();
    }

    /// <summary>True when the completion is exactly [&lt;think&gt;…&lt;/think&gt;]&lt;answer&gt;…&lt;/answer&gt;
    /// (surrounding whitespace allowed, no tag inside the answer).</summary>
    public static bool IsWellFormatted(string? completion)
    {
        if (completion is null) return false;
        var s = completion.Trim();
        if (s.StartsWith(PromptTemplate.ThinkOpen, StringComparison.Ordinal))
        {
            int end = s.IndexOf(PromptTemplate.ThinkClose, StringComparison.Ordinal);
            if (end < 0) return false;
            s = s[(end + PromptTemplate.ThinkClose.Length)..].TrimStart();
        }
        if (s.Length < PromptTemplate.AnswerOpen.Length + PromptTemplate.AnswerClose.Length) return false;
        if (!s.StartsWith(PromptTemplate.AnswerOpen, StringComparison.Ordinal) || !s.EndsWith(PromptTemplate.AnswerClose, StringComparison.Ordinal)) return false;
        var inner = s[PromptTemplate.AnswerOpen.Length..^PromptTemplate.AnswerClose.Length];
        return !inner.Contains('<') && inner.Trim().Length > 0;
    }

    /// <summary>An optionally signed integer of at most 18 digits, or null. With <paramref name="leastSignificantFirst"/>
    /// the digits after the optional sign are read right to left ("38" → 83, "001" → 100).</summary>
    public static long? ParseInteger(string? text, bool leastSignificantFirst = false)
    {
        if (text is null) return null;
        var s = text.Trim();
        if (leastSignificantFirst) s = s.StartsWith('-') ? "-" + Reverse(s[1..]) : Reverse(s);
        if (s.Length == 0 || s.Length > 19) return null;
        int i = s[0] == '-' ? 1 : 0;
        if (i == s.Length) return null;
        long v = 0;
        for (; i < s.Length; i++)
        {
            if (s[i] < '0' || s[i] > '9') return null;
            v = v * 10 + (s[i] - '0');
        }
        return s[0] == '-' ? -v : v;
    }

    /// <summary>Partial credit for a number: the share of digit positions (aligned at the units digit, the
    /// longer length counts) that match the reference. 1 iff equal; 0 when unparsable. Both texts are read in
    /// the same order (<paramref name="leastSignificantFirst"/>: units digit first, so aligned from the left).</summary>
    public static double DigitCredit(string? answer, string reference, bool leastSignificantFirst = false)
    {
        if (ParseInteger(answer) is null || reference.Length == 0) return 0;
        var a = answer!.Trim();
        if (leastSignificantFirst) (a, reference) = (Reverse(a), Reverse(reference.Trim()));
        int n = Math.Max(a.Length, reference.Length), match = 0;
        for (int k = 1; k <= n; k++)
            if (k <= a.Length && k <= reference.Length && a[^k] == reference[^k]) match++;
        return (double)match / n;
    }

    /// <summary>The characters of <paramref name="text"/> in reverse order.</summary>
    public static string Reverse(string text) { var c = text.ToCharArray(); Array.Reverse(c); return new string(c); }
}

/// <summary>Evaluates + − × ÷ ( ) expressions over non-negative integers (Countdown answers), by recursive
/// descent with a depth limit; returns false for anything else (never throws).</summary>
public static class ExpressionEvaluator
{
    const int MaxLength = 200, MaxDepth = 32;

    public static bool TryEvaluate(string? text, out double value)
    {
        value = 0;
        if (text is null || text.Length == 0 || text.Length > MaxLength) return false;
        var s = text.Replace(" ", "");
        int pos = 0;
        if (!Expr(s, ref pos, 0, out value) || pos != s.Length || !double.IsFinite(value)) { value = 0; return false; }
        return true;
    }

    /// <summary>The integer literals of the expression in order, or null when it holds other characters.</summary>
    public static List<long>? Numbers(string? text)
    {
        if (text is null || text.Length > MaxLength) return null;
        var list = new List<long>();
        long cur = 0; int digits = 0;
        foreach (var c in text)
        {
            if (c >= '0' && c <= '9') { if (++digits > 9) return null; cur = cur * 10 + (c - '0'); continue; }
            if (digits > 0) { list.Add(cur); cur = 0; digits = 0; }
            if ("+-*/() ".IndexOf(c) < 0) return null;
        }
        if (digits > 0) list.Add(cur);
        return list;
    }

    static bool Expr(string s, ref int pos, int depth, out double v)
    {
        if (!Term(s, ref pos, depth, out v)) return false;
        while (pos < s.Length && (s[pos] == '+' || s[pos] == '-'))
        {
            char op = s[pos++];
            if (!Term(s, ref pos, depth, out var r)) return false;
            v = op == '+' ? v + r : v - r;
        }
        return true;
    }

    static bool Term(string s, ref int pos, int depth, out double v)
    {
        if (!Factor(s, ref pos, depth, out v)) return false;
        while (pos < s.Length && (s[pos] == '*' || s[pos] == '/'))
        {
            char op = s[pos++];
            if (!Factor(s, ref pos, depth, out var r)) return false;
            if (op == '/' && r == 0) return false;
            v = op == '*' ? v * r : v / r;
        }
        return true;
    }

    static bool Factor(string s, ref int pos, int depth, out double v)
    {
        v = 0;
        if (depth > MaxDepth || pos >= s.Length) return false;
        if (s[pos] == '(')
        {
            pos++;
            if (!Expr(s, ref pos, depth + 1, out v) || pos >= s.Length || s[pos] != ')') return false;
            pos++;
            return true;
        }
        int start = pos;
        while (pos < s.Length && s[pos] >= '0' && s[pos] <= '9' && pos - start < 9) { v = v * 10 + (s[pos] - '0'); pos++; }
        return pos > start;
    }
}
