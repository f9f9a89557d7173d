"""The result tables of the README and docs/results.md, generated from the JSON that the
benchmarks wrote, so no figure in them is typed by hand.

    python -m bench.readme [--results docs/results] [--docs README.md docs/results.md] [--check]

Each table sits between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in a page (the
README shows the headline ones, docs/results.md all); this rewrites what is between them
(--check: exit 1 if a page is out of date)."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from bench.paired_speedup import PairedSpeedup

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", ROOT / "docs" / "results.md")
DECODE_ENGINES = ("edgeseq int8", "edgeseq int8 (shared pool, as the CLI)", "Optimum ORT dynamic int8",
                  "Optimum ORT fp32", "CTranslate2 int8")
WHISPER_ENGINES = {"edgeseq-int8": "edgeseq int8", "faster-whisper-int8": "faster-whisper int8",
                   "edgeseq-fp32": "edgeseq fp32", "faster-whisper-float32": "faster-whisper fp32"}


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _machine(m: dict) -> str:
    return (f"{m['cpu_model']}, {m['usable_cores']} cores, {m['threads']} threads, "
            f"onnxruntime {m['onnxruntime']}, commit {m.get('git_commit', '?')}")


def _table(intro: str, headers: list[str], rows: list[list[str]], machine: dict | None) -> list[str]:
    """Lines of an intro sentence, a Markdown table and, given a machine, where it ran."""
    lines = [intro, "", "| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return lines + (["", f"Run on: {_machine(machine)}."] if machine else [])


def decode_table(data: dict) -> str:
    rows = {(r["label"], r["shape"]): r for r in data["results"] if r["status"] == "ok"}
    shapes = list(dict.fromkeys(r["shape"] for r in data["results"]))
    head = " | ".join(f"{s}: first token ms | decode tokens/s | peak RSS MB" for s in shapes)
    lines = [f"| engine | {head} |", "| --- |" + " --- | --- | --- |" * len(shapes)]
    for label in DECODE_ENGINES:
        cells = []
        for shape in shapes:
            r = rows.get((label, shape))
            cells += (["not run"] * 3 if r is None else
                      [f"{r['first_token_ms']['median']:.1f}", f"{r['decode_tokens_per_s']['median']:.1f}",
                       f"{r['peak_rss_mb']:.0f}"])
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for shape in shapes:
        mine = rows.get(("edgeseq int8", shape))
        for peer in ("Optimum ORT dynamic int8", "CTranslate2 int8"):  # the Python API's default
            other = rows.get((peer, shape))
            if mine and other:
                lines.append(
                    f"- {shape}: edgeseq int8 decodes {mine['decode_tokens_per_s']['median'] / other['decode_tokens_per_s']['median']:.2f}x "
                    f"{peer}'s tokens/s; first token {other['first_token_ms']['median'] / mine['first_token_ms']['median']:.2f}x "
                    f"as fast; peak RSS {mine['peak_rss_mb'] / other['peak_rss_mb']:.2f}x.")
    lines += ["", f"Run on: {_machine(data['machine'])}."]
    return "\n".join(lines)


def whisper_table(data: dict) -> str:
    rows = {(r["engine"], r["model"]): r for r in data["results"] if r["status"] == "ok"}
    models = list(dict.fromkeys(r["model"] for r in data["results"]))
    lines = ["| real-time factor (peak RSS MB, transcript identical to faster-whisper fp32) | "
             + " | ".join(WHISPER_ENGINES.values()) + " |",
             "| --- |" + " --- |" * len(WHISPER_ENGINES)]
    for model in models:
        cells = []
        for engine in WHISPER_ENGINES:
            r = rows.get((engine, model))
            cells.append("—" if r is None else
                         f"{r['real_time_factor']['median']:.1f}x ({r['peak_rss_mb']:.0f}, "
                         f"{'yes' if r['identical_to_reference'] else 'WER %.3f' % r['word_error_vs_reference']})")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    busy = max(r.get("others_cpu_cores") or 0.0 for r in data["results"])
    lines += ["", f"Run on: {_machine(data['machine'])}; other processes used up to {busy:.1f} cores."]
    return "\n".join(lines)


def skip_table(data: dict) -> str:
    lines = _table(f"No-change baseline GLEU: {data['no_change_gleu']:.3f}.",
                   ["configuration", "GLEU", "tokens/s", "speedup", "decoder layers per token"],
                   [[r["config"], f"{r['gleu']:.3f}", f"{r['tokens_per_s']:.0f}", f"{r['speedup']:.2f}x",
                     f"{r['layers_per_token']:.2f}"] for r in data["rows"]], None)
    spec = data.get("self_speculative", [])
    if spec:
        lines += [""] + _table("Self-speculative `--draft layers` (lossless), same architecture and "
                               "recipe with and without the early-exit loss:",
                               ["model", "package", "speedup vs plain", "acceptance", "identical to plain"],
                               [[s["model"], f"`{Path(s.get('package', '?')).name}`", f"{s['speedup']:.2f}x",
                                 f"{s['acceptance']:.2f}", f"{s['identical']}/{s['inputs']}"] for s in spec],
                               None)
    return "\n".join(lines)


def _ms_per_input(row: dict) -> str:
    """A configuration's median wall time per input, in milliseconds."""
    return f"{row['seconds_median'] / row['inputs'] * 1e3:.2f}"


def _paired(row: dict, key: str = "paired") -> list[str]:
    """The paired-speedup cells (bench/paired_speedup.py); runs before it have none."""
    paired = row.get(key)
    return ["-", "-"] if paired is None else PairedSpeedup.from_json(paired).cells()


def _drafting_cells(row: dict) -> list[str]:
    """Acceptance, tokens per verify pass, verify passes per input; "-" for the control
    (plain greedy run again), which drafts nothing."""
    if "acceptance_rate" not in row:
        return ["-", "1.00", "-"]
    return [f"{row['acceptance_rate']:.2f}", f"{row['tokens_per_pass']:.2f}",
            f"{row['verify_passes'] / row['inputs']:.2f}"]


def speculative_table(data: dict) -> str:
    drafted = data["rows"][1:]
    paired = any("paired" in r for r in drafted)
    lines = _table(
        f"{data['rows'][0]['inputs']} inputs ({data['data']}), package `{data['package']}`"
        + (f", {data['batch']} inputs per call." if data.get("batch", 1) > 1 else "."),
        ["drafter", "ms per input", "speedup vs plain greedy"]
        + (["paired speedup [95% interval]", "5% rule"] if paired else [])
        + ["identical to plain", "acceptance", "tokens per verify pass", "verify passes per input"],
        [[data["rows"][0]["drafter"], _ms_per_input(data["rows"][0]), "1.00x"]
         + (["-", "-"] if paired else []) + ["-", "-", "1.00", "-"]] +
        [[r["drafter"], _ms_per_input(r), f"{r['speedup']:.2f}x"]
         + (_paired(r) if paired else [])
         + [f"{r['identical_outputs']}/{r['inputs']}"] + _drafting_cells(r)
         for r in drafted], None)
    buckets = list(drafted[0].get("by_source_length", {})) if drafted else []
    if buckets:  # the same run, per source length (each input's median time, summed)
        counts = drafted[0]["by_source_length"]
        lines += [""] + _table(
            "Speedup by source length in tokens (inputs):",
            ["drafter"] + [f"{b} ({counts[b]['inputs']})" for b in buckets],
            [[r["drafter"]] + [f"{r['by_source_length'][b]['speedup']:.2f}x" for b in buckets]
             for r in drafted], None)
    return "\n".join(lines + ["", f"Run on: {_machine(data['machine'])}."])


def variants_table(data: dict) -> str:
    rerank = "on" if data.get("rerank_source") else "off"
    return "\n".join(_table(
        f"{data['rows'][0]['inputs']} inputs ({data['data']}), rerank_source {rerank}, "
        f"median of {data['repeats']}.",
        ["package", "format", "copy bias", "mode", "seconds", "speedup vs its own plain greedy",
         "speedup vs the fastest plain greedy", "identical to its own plain", "GLEU"],
        [[r["package"], r["format"], f"{r['copy_bias']:g}", r["mode"], f"{r['seconds_median']:.2f}",
          f"{r['speedup_own_plain']:.2f}x", f"{r['speedup_fastest_plain']:.2f}x",
          f"{r['identical_to_own_plain']}/{r['inputs']}",
          f"{r['gleu']:.4f}" if "gleu" in r else "-"] for r in data["rows"]],
        data["machine"]))


def skip_whisper_table(data: dict) -> str:
    return "\n".join(_table(
        f"`{Path(data['package']).name}`, the shared clips.",
        ["configuration", "WER vs full model", "decoder speedup", "decoder layers per pass"],
        [[r["config"], f"{r['wer_vs_full']:.3f}", f"{r['decoder_speedup']:.2f}x", f"{r['layers_per_pass']:.2f}"]
         for r in data["rows"]], data["machine"]))


def whisper_layers_table(data: dict) -> str:
    paired = any("paired" in r for r in data["rows"])
    decoder_paired = any("decoder_paired" in r for r in data["rows"])
    return "\n".join(_table(
        f"`{Path(data['package']).name}`, {data['audio_s']:.1f} s of audio.",
        ["configuration", "speedup vs plain"]
        + (["paired speedup [95% interval]", "5% rule"] if paired else [])
        + ["decoder speedup"]
        + (["decoder paired [95% interval]", "5% rule (decoder)"] if decoder_paired else [])
        + ["real-time factor", "identical transcript", "acceptance", "decoder passes"],
        [[r["config"], f"{r['speedup']:.2f}x"]
         + (_paired(r) if paired else [])
         + [f"{r['decoder_speedup']:.2f}x" if "decoder_speedup" in r else "-"]  # older runs lack it
         + (_paired(r, "decoder_paired") if decoder_paired else [])
         + [f"{r['real_time_factor']:.1f}x", "yes" if r["identical"] else "no",
          f"{r['acceptance']:.2f}", str(r["decoder_passes"])] for r in data["rows"]], data["machine"]))


def scaling_table(data: dict) -> str:
    lines = [f"Package `{Path(data['package']).name}`.", ""]
    series = (("first_token_ms_by_input", "input tokens", "first token ms"),
              ("decode_ms_per_token_by_output", "output tokens", "decode ms per token"),
              ("tokens_per_s_by_batch", "batch", "tokens/s"))
    for key, xlabel, ylabel in series:
        points = list(next(iter(data["results"].values()))[key])
        lines += [f"| {ylabel} by {xlabel} | " + " | ".join(points) + " |",
                  "| --- |" + " --- |" * len(points)]
        for threads, res in data["results"].items():
            lines.append(f"| {threads} thread(s) | " + " | ".join(f"{res[key][x]:.1f}" for x in points) + " |")
        lines.append("")
    lines.append(f"Run on: {_machine(data['machine'])}.")
    return "\n".join(lines)


SPECMEMO_NAMES = {"plain_rows": "plain, row by row", "speculative": "speculative, lockstep", "planned": "planned, lockstep",
                  "rows": "planned, row by row"}


def specmemo_table(data: dict) -> str:
    rows = {r["config"]: r for r in data["rows"] if "error" not in r}
    spec = rows.get("speculative")

    def versus(r: dict) -> str:
        if not spec:
            return ""
        return (f"{r['tokens_per_s'] / spec['tokens_per_s']:.0%} / "
                f"{r['generation_mb'] / max(spec['generation_mb'], 1e-9):.0%}")
    return "\n".join(_table(
        f"Package `{data['package']}`, {data['inputs']} inputs ({data['data']}), batch {data['batch']}, "
        f"draft `{data['draft']}` up to {data['max_draft']} tokens, budget {data['budget_mb']:.0f} MB.",
        ["configuration", "tokens/s", "peak RSS MB (plan's prediction)", "generation MB",
         "throughput / generation memory vs unplanned speculation"],
        [[SPECMEMO_NAMES.get(name, name), f"{r['tokens_per_s']:.0f}",
          f"{r['peak_rss_mb']:.0f}" + (f" ({r['predicted_total_mb']:.0f})" if r.get("predicted_total_mb") else ""),
          f"{r['generation_mb']:.0f}", versus(r)] for name, r in rows.items()],
        data["machine"]))


def decoder_compute_table(data: dict) -> str:
    """bench/decoder_compute.py: the int8 decoder against its fp32 products, plain and drafted."""
    n, quality = data["inputs"], data.get("quality", {})
    rows = [[name, f"{data['seconds'][name + '/plain']:.2f}", f"{data['seconds'][name + '/input']:.2f}",
             f"{data['input_speedup'][name]:.2f}x", f"{data['input_identical_to_plain'][name]}/{n}",
             f"{quality[name + '/plain']:.4f}" if name + "/plain" in quality else "-"]
            for name in ("int8", "fp32")]
    ratio = data["fp32_over_int8_time"]
    lines = _table(f"{n} inputs, `{data['package']}`, median of {data['rounds']} rounds.",
                   ["decoder computes in", "plain s", "input s", "input speedup",
                    "input identical to plain", "GLEU"], rows, data["machine"])
    summary = (f"fp32 / int8 time: plain {ratio['plain']:.2f}x, input drafting "
               f"{ratio['input']:.2f}x; fp32 input drafting against int8 plain greedy "
               f"{data['input_vs_int8_plain']:.2f}x; fp32 plain outputs as int8's: "
               f"{data['fp32_plain_as_int8_plain']}/{n}.")
    lines[-2:-2] = ["", summary]
    return "\n".join(lines)


SOURCES = {  # section name -> (JSON under the results folder, table maker)
    "decode": ("decode/results.json", decode_table),
    "whisper": ("transcribe/results.json", whisper_table),
    "skip": ("skip/skip.json", skip_table),
    "skip_whisper": ("skip/skip_whisper.json", skip_whisper_table),
    "speculative": ("speculative/speculative.json", speculative_table),
    "speculative_t5": ("speculative-t5-small/speculative.json", speculative_table),
    "speculative_model": ("speculative-model/speculative.json", speculative_table),
    "speculative_fixed": ("speculative-fixed/speculative.json", speculative_table),
    "speculative_batch": ("speculative-batch/speculative.json", speculative_table),
    "speculative_variants": ("speculative-variants/speculative_variants.json", variants_table),
    "speculative_variants_rerank": ("speculative-variants/speculative_variants_rerank.json",
                                    variants_table),
    "whisper_layers": ("speculative/whisper_layers.json", whisper_layers_table),
    "whisper_layers_untrained": ("speculative-whisper-untrained/whisper_layers.json", whisper_layers_table),
    "scaling": ("scaling/scaling.json", scaling_table),
    "specmemo": ("specmemo/specmemo.json", specmemo_table),
    "specmemo_model": ("specmemo-model/specmemo.json", specmemo_table),
    "decoder_compute": ("decoder-compute/decoder_compute.json", decoder_compute_table),
}


def render(results: Path) -> dict[str, str]:
    """Section name -> generated Markdown, for every section whose JSON exists."""
    out = {}
    for name, (rel, make) in SOURCES.items():
        data = _read(results / rel)
        if data is not None:
            out[name] = f"<!-- generated by `python -m bench.readme` from docs/results/{rel} -->\n" + make(data)
    return out


def update(readme: str, sections: dict[str, str]) -> str:
    """`readme` with each marked section replaced by its generated text."""
    for name, text in sections.items():
        pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.S)
        readme = pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--results", type=Path, default=ROOT / "docs" / "results")
    ap.add_argument("--docs", type=Path, nargs="+", default=list(PAGES))
    ap.add_argument("--check", action="store_true", help="only report whether the pages are up to date")
    a = ap.parse_args(argv)
    sections = render(a.results)
    stale = []
    for page in a.docs:
        before = page.read_text()
        after = update(before, sections)
        if after != before:
            stale.append(page)
            if not a.check:
                page.write_text(after)
                print(f"updated {page}")
    if a.check:
        print("result tables are up to date" if not stale else
              "out of date: " + ", ".join(str(p) for p in stale))
        return 1 if stale else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
