#!/usr/bin/env python3
"""Compare or store executed WhaleTech notebooks (used by run-all.sh).

  normalize.py clean   <executed.ipynb> <out.ipynb>   write the executed notebook without kernel noise
  normalize.py compare <stored.ipynb> <executed.ipynb> exit 1 and print a diff when they differ
  normalize.py errors  <executed.ipynb>                exit 1 and print each failing cell and its messages
  normalize.py selftest                                 check the masking rules on small examples

"Kernel noise" (dropped before storing and before comparing): the .NET Interactive kernel's HTML bootstrap
script in the first cell's outputs, and nbclient's per-cell execution timestamps (metadata.execution).

What the comparison ignores, and nothing else:
  * execution counts and notebook-level metadata (kernel and language versions);
  * timings: in Markdown tables, every cell of a column whose header names a time unit or a rate
    (ms, µs, s, seconds, .../s, GFLOP/s, tokens / s); in text, any number followed by a time unit (ns, µs, ms, s);
  * the text of cells tagged "machine-dependent" (the machine description of 00-welcome); their output
    types and mime types are still compared.
Everything else, including every seeded number and the PNG bytes of every plot, must be identical.
"""
import difflib
import json
import re
import sys

KERNEL_BOOTSTRAP = "dotnet-interactive-this-cell"
TIME_UNIT = r"(?:ns|µs|us|ms|s|sec|seconds?)"
TIMING_HEADER = re.compile(r"(?:^|[\s(])" + TIME_UNIT + r"(?:$|[\s),/])|/\s*s\b|\bGFLOP|\bseconds?\b|\btime\b", re.I)
TIMING_TEXT = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?\s?" + TIME_UNIT + r"\b")


def text(value):
    return "".join(value) if isinstance(value, list) else value


def is_noise(output):
    return output.get("output_type") == "display_data" and KERNEL_BOOTSTRAP in text(output.get("data", {}).get("text/html", ""))


def clean(nb):
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("execution", None)
        if cell["cell_type"] == "code":
            cell["outputs"] = [o for o in cell["outputs"] if not is_noise(o)]
    return nb


def mask_table(md):
    """Masks the timing columns of every Markdown table in md."""
    out, timing_cols = [], None
    for line in md.split("\n"):
        s = line.strip()
        if not (s.startswith("|") and s.endswith("|")):
            timing_cols = None
            out.append(line)
            continue
        cells = [c.strip() for c in s[1:-1].split("|")]
        if timing_cols is None:                                   # header row
            timing_cols = {i for i, c in enumerate(cells) if TIMING_HEADER.search(c)}
        elif not all(set(c) <= set("-: ") for c in cells):       # a data row (not the |---| rule)
            cells = ["<timing>" if i in timing_cols and c else c for i, c in enumerate(cells)]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def canonical(nb):
    lines = []
    for i, cell in enumerate(clean(nb)["cells"]):
        lines.append(f"## cell {i} [{cell['cell_type']}]")
        lines.extend(text(cell["source"]).split("\n"))
        if cell["cell_type"] != "code":
            continue
        machine = "machine-dependent" in cell.get("metadata", {}).get("tags", [])
        for o in cell["outputs"]:
            kind = o["output_type"]
            if kind == "stream":
                items = [(o.get("name", ""), text(o["text"]))]
            elif kind == "error":
                items = [("error", o.get("ename", "") + ": " + o.get("evalue", ""))]
            else:
                items = sorted((mime, text(v) if isinstance(v, (str, list)) else json.dumps(v, sort_keys=True))
                               for mime, v in o.get("data", {}).items())
            for label, value in items:
                if machine and kind != "error":
                    value = "<machine-dependent>"
                elif label == "text/markdown":
                    value = TIMING_TEXT.sub("<t>", mask_table(value))
                elif not label.startswith("image/"):
                    value = TIMING_TEXT.sub("<t>", value)
                lines.append(f"  >> {kind} {label}")
                lines.extend("     " + l for l in value.split("\n"))
    return lines


def selftest():
    table = "| n | median ms | p10 ms | GFLOP/s | tokens / s | KV bytes / token |\n|---|---|---|---|---|---|\n| 64 | 0.25 | 0.2 | 16.4 | 2411 | 4096 |\n"
    masked = mask_table(table)
    assert "| 64 | <timing> | <timing> | <timing> | <timing> | 4096 |" in masked, masked
    for header in ["step | MaxVio", "mode | cache KiB (1 × 256 tokens, 2 layers, fp32)", "format | gradient std", "token | experts | Σg"]:
        cols = header.count("|") + 1
        masked = mask_table("| " + header + " |\n|" + "---|" * cols + "\n|" + " 1 |" * cols)
        assert "<timing>" not in masked, masked
    assert TIMING_TEXT.sub("<t>", "6 code cells ran in 1.5 s; step 20: loss 2.465") == "6 code cells ran in <t>; step 20: loss 2.465"
    assert TIMING_TEXT.sub("<t>", "2 safetensors files, 175,584 parameters") == "2 safetensors files, 175,584 parameters"
    return 0


def main(argv):
    if len(argv) == 2 and argv[1] == "selftest":
        return selftest()
    if len(argv) == 4 and argv[1] == "clean":
        nb = clean(json.load(open(argv[2], encoding="utf-8")))
        with open(argv[3], "w", encoding="utf-8") as f:
            json.dump(nb, f, indent=1, ensure_ascii=False)
            f.write("\n")
        return 0
    if len(argv) == 4 and argv[1] == "compare":
        stored = canonical(json.load(open(argv[2], encoding="utf-8")))
        fresh = canonical(json.load(open(argv[3], encoding="utf-8")))
        if stored == fresh:
            return 0
        diff = list(difflib.unified_diff(stored, fresh, "stored " + argv[2], "fresh " + argv[3], lineterm="", n=2))
        for line in diff[:200]:
            print(line[:300])
        if len(diff) > 200:
            print(f"... {len(diff) - 200} more diff lines")
        return 1
    if len(argv) == 3 and argv[1] == "errors":
        nb, bad = json.load(open(argv[2], encoding="utf-8")), 0
        for i, cell in enumerate(nb["cells"]):
            outputs = cell.get("outputs", [])
            if not any(o["output_type"] == "error" for o in outputs):
                continue
            bad += 1
            print(f"--- cell {i} failed:")
            print("    " + text(cell["source"]).replace("\n", "\n    "))
            for o in outputs:
                if o["output_type"] == "stream" and o.get("name") == "stderr":
                    print(text(o["text"]).strip())
                elif o["output_type"] == "error":
                    print(f"{o.get('ename', '')}: {o.get('evalue', '')}")
                    print("\n".join(o.get("traceback", []))[:4000])
        return 1 if bad else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
