"""What a row-invariant decoder (export/row_invariant.py) costs and what it buys, in one
run: the same package before and after the rewrite, plain greedy and a drafter (input
drafting; layer drafting for Whisper) on each, and how many drafted outputs equal plain
greedy's.

    python -m bench.row_invariant PKG [--before OLD_PKG] [--data jfleg|ids] [--limit 754]
        [--rounds 3] [--max-new-tokens 160] [--threads 2] [--out DIR]
    python -m bench.row_invariant --shape t5-small   # random t5-small int8, random ids
    python -m bench.row_invariant WHISPER_PKG --before OLD --data audio   # layer drafting

PKG not yet row-invariant: it is the "before", and a rewritten copy (in a temporary
folder) the "after". PKG row-invariant already (the shipped default): give the package
as it was with --before, e.g. `git archive 27fdcfe edgeseq/default_model | tar -x -C
/tmp/old` for the default before the rewrite. Each setup runs in a child process of its
own, the two alternating round by round; inside a child, plain greedy and input drafting
alternate over chunks of 25 inputs, so drift hits all four alike. Decoding as in
bench.speculative (no rerank). `--shape`: a random checkpoint of that shape (bench/shapes.py)
exported int8 without the rewrite into bench/.cache, on 100 random inputs of 32 ids with
32 new tokens (input drafts of random weights are rarely accepted: this measures what
the passes cost). `--data audio`: a Whisper package transcribes ../shared/data/audio,
plain and with layer drafting (clip by clip, alternating), and the transcripts are
compared."""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.children import alternate
from bench.machine import machine_info, write_json
from bench.speculative import SHARED, load_inputs

CHUNK = 25
DRAFTER = {"jfleg": "input", "ids": "input", "audio": "layers"}  # what each data drafts with
CACHE = Path(__file__).resolve().parent / ".cache" / "row_invariant"


def export_shape(shape_name: str) -> Path:
    """An int8 package of a random `shape_name` checkpoint, exported once without the
    rewrite (the "before")."""
    from bench.shapes import ensure_checkpoint, get_shape
    from edgeseq.export import export_checkpoint
    out = CACHE / f"{shape_name}-int8-plain-rows"
    if not (out / "manifest.json").is_file():
        export_checkpoint(ensure_checkpoint(get_shape(shape_name)), out, quant="int8",
                          validate=False, row_invariant=False)
    return out


def drafts(data: str) -> dict[str, str | None]:
    return {"plain": None, DRAFTER[data]: DRAFTER[data]}


def child(package: str, data: str, limit: int, threads: int, max_new_tokens: int) -> dict:
    import edgeseq
    engine = edgeseq.load(package, threads=threads)
    modes = drafts(data)
    if data == "audio":  # every shared clip, one at a time
        chunks = [[clip] for clip in sorted((SHARED / "data" / "audio").glob("*.wav"))]

        def run(clip, draft):
            return engine.transcribe(str(clip), draft=draft).text
    else:
        inputs = load_inputs(data, limit, engine.arch.vocab_size, SHARED)
        chunks = [inputs[start:start + CHUNK] for start in range(0, len(inputs), CHUNK)]
        options = dict(max_new_tokens=max_new_tokens, rerank_source=False)

        def run(item, draft):
            return list(engine.generate(item, draft=draft, **options).token_ids)
    for draft in modes.values():  # onnxruntime's first runs of new shapes
        run(chunks[0][0], draft)
    seconds = {name: 0.0 for name in modes}
    outputs: dict[str, list] = {name: [] for name in modes}
    for i, chunk in enumerate(chunks):  # the order turns chunk by chunk
        for name in (list(modes) if i % 2 == 0 else list(reversed(modes))):
            began = time.perf_counter()
            outputs[name] += [run(item, modes[name]) for item in chunk]
            seconds[name] += time.perf_counter() - began
    return {"row_invariant": engine.manifest.row_invariant_decoder,
            **{f"{name}_s": s for name, s in seconds.items()}, "outputs": outputs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("package", nargs="?")
    ap.add_argument("--shape", help="export a random checkpoint of this shape and measure it")
    ap.add_argument("--before", help="the same package as exported before the rewrite")
    ap.add_argument("--data", default="jfleg", choices=list(DRAFTER))
    ap.add_argument("--limit", type=int, default=754)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.shape:
        a.package, a.data = str(export_shape(a.shape)), "ids"
        a.limit, a.max_new_tokens = min(a.limit, 100), 32
    if a.package is None:
        ap.error("give a package or --shape")
    if a.child:
        result = child(a.package, a.data, a.limit, a.threads, a.max_new_tokens)
        print(json.dumps(result))
        return 0
    with tempfile.TemporaryDirectory(prefix="edgeseq-row-invariant-") as tmp:
        packages = {"before": a.before, "after": a.package}
        if a.before is None:  # the package is the "before"; rewrite a copy
            from edgeseq.export.row_invariant import upgrade_package
            after = Path(tmp) / "after"
            shutil.copytree(a.package, after)
            if not upgrade_package(after):
                sys.exit(f"{a.package} is row-invariant already (give --before) or int4")
            packages = {"before": a.package, "after": str(after)}

        def args(setup: str) -> list[str]:
            return [packages[setup], "--child", "--data", a.data, "--limit", str(a.limit),
                    "--threads", str(a.threads), "--max-new-tokens", str(a.max_new_tokens)]
        runs = alternate("bench.row_invariant", args, list(packages), a.rounds)
    drafter, rows = DRAFTER[a.data], {}
    for setup, results in runs.items():
        outputs = results[0]["outputs"]
        rows[setup] = {"row_invariant": results[0]["row_invariant"],
                       **{f"{name}_s": statistics.median(r[f"{name}_s"] for r in results)
                          for name in drafts(a.data)},
                       f"{drafter}_identical_to_plain": sum(
                           x == y for x, y in zip(outputs[drafter], outputs["plain"])),
                       "outputs_same_every_round": all(r["outputs"] == outputs for r in results)}
        rows[setup][f"{drafter}_speedup"] = rows[setup]["plain_s"] / rows[setup][f"{drafter}_s"]
    count = len(runs["before"][0]["outputs"]["plain"])
    same_plain = sum(x == y for x, y in zip(runs["before"][0]["outputs"]["plain"],
                                            runs["after"][0]["outputs"]["plain"]))
    cost = {name: rows["after"][f"{name}_s"] / rows["before"][f"{name}_s"]
            for name in drafts(a.data)}
    machine = machine_info(a.threads)
    print(f"\n{a.package}: {count} inputs ({a.data}), {a.threads} threads, median of "
          f"{a.rounds} rounds; CPU {machine['cpu_model']}")
    print(f"| decoder | plain greedy s | {drafter} drafting s | {drafter} speedup "
          f"| {drafter} identical to plain |")
    print("|---|---|---|---|---|")
    for setup, r in rows.items():
        print(f"| {setup} | {r['plain_s']:.2f} | {r[f'{drafter}_s']:.2f} "
              f"| {r[f'{drafter}_speedup']:.2f}x | {r[f'{drafter}_identical_to_plain']}/{count} |")
    print(f"after / before time: plain greedy {cost['plain']:.3f}, {drafter} drafting "
          f"{cost[drafter]:.3f}; plain greedy outputs equal before and after: {same_plain}/{count}")
    if a.out:
        write_json(a.out, "row_invariant.json", {
            "machine": machine, "package": a.package, "data": a.data, "inputs": count,
            "rounds": a.rounds, "max_new_tokens": a.max_new_tokens, "rows": rows,
            "time_after_over_before": cost, "plain_outputs_equal": same_plain})
    return 0


if __name__ == "__main__":
    sys.exit(main())
