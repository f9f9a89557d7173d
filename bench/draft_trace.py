"""How a drafter's planner behaves over a long run: plain greedy once, then the drafter
several times in a row on the same engine (its planner keeps what it learned), with the
time of every block of calls and what the planner believed after it.

    python -m bench.draft_trace PKG [--drafter layers] [--data jfleg|news|ids] [--limit 754]
        [--block 50] [--repeats 3] [--threads 2] [--provider cpu|cuda|...] [--out DIR]

A diagnosis, not a speed table: plain greedy runs once, first, so a machine whose speed
drifts shows here as drifting ratios (bench.speculative interleaves its configurations
for the figures it reports). Each repeat's ratio is against that plain run; per block
the drafted tokens, decoder passes and the planner's summary (DraftController.summary:
its plan, a plain pass's cost, a drafted token's cost per way, survival of drafts) say
whether drafting was on and what the planner thought it cost. Every run starts with an
empty n-gram table, as in bench.speculative: otherwise n-gram drafting would recycle the
outputs of the run before, the same inputs' (2x plain on JFLEG dev, for nothing)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.speculative import SHARED, load_inputs, load_with_drafters


def run_blocks(engine, inputs: list, options: dict, block: int) -> list[dict]:
    """Decode `inputs` one call each; per block of `block` calls its seconds, tokens
    generated, drafted tokens and decoder passes, and the planner's summary after it when
    drafting."""
    blocks = []
    for first in range(0, len(inputs), block):
        began, tokens, drafted, passes = time.perf_counter(), 0, 0, 0
        for item in inputs[first:first + block]:
            result = engine.generate(item, **options)
            spec = result.stats.speculation or {}
            tokens += len(result.token_ids)
            drafted += spec.get("drafted", 0)
            passes += spec.get("verify_passes", 0)
        row = {"first": first, "seconds": time.perf_counter() - began, "tokens": tokens,
               "drafted": drafted, "passes": passes}
        if options.get("draft") is not None:
            row["planner"] = engine.draft_planner(**options).summary()
        blocks.append(row)
    return blocks


def main(argv: list[str] | None = None) -> int:
    from bench.machine import machine_info, write_json
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--drafter", default="layers", help="input, ngram, layers or model:PKG")
    ap.add_argument("--data", default="jfleg", choices=["jfleg", "news", "ids"])
    ap.add_argument("--limit", type=int, default=754)
    ap.add_argument("--block", type=int, default=50, help="calls per reported block")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--provider", default="cpu")
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    engine, (draft,) = load_with_drafters(a.package, [a.drafter], a.threads, a.provider)
    inputs = load_inputs(a.data, a.limit, engine.arch.vocab_size, a.shared)
    plain_options = {"max_new_tokens": a.max_new_tokens, "rerank_source": False, "draft": None}
    for item in inputs[:8]:  # warm-up
        engine.generate(item, **plain_options)
    engine.ngram = type(engine.ngram)()
    runs = [{"name": "plain", "blocks": run_blocks(engine, inputs, plain_options, a.block)}]
    for repeat in range(a.repeats):
        engine.ngram = type(engine.ngram)()
        runs.append({"name": f"{a.drafter} #{repeat + 1}",
                     "blocks": run_blocks(engine, inputs, {**plain_options, "draft": draft}, a.block)})
    plain_s = sum(b["seconds"] for b in runs[0]["blocks"])
    for run in runs:
        run["seconds"] = sum(b["seconds"] for b in run["blocks"])
        run["speedup"] = plain_s / run["seconds"]
        print(f"{run['name']}: {run['seconds']:.2f} s, {run['speedup']:.2f}x plain")
        for b in run["blocks"]:
            planner = b.get("planner")
            plan = planner["plan"] if planner else None
            believed = "" if planner is None else (
                f", plan {plan}, plain pass {planner['plain_pass_ms'] or 0:.2f} ms, draft step "
                + ", ".join(f"way {w} {v['step_ms'] or 0:.2f} ms (cold {v['cold_step_ms'] or 0:.2f})"
                            for w, v in planner["ways"].items()))
            print(f"  calls {b['first']}+: {b['seconds']:.2f} s, {b['tokens']} tokens, {b['drafted']} drafted, "
                  f"{b['passes']} passes{believed}")
    if a.out:
        write_json(a.out, "draft_trace.json", {
            "machine": machine_info(a.threads), "package": a.package, "provider": a.provider,
            "drafter": a.drafter, "data": a.data, "block": a.block, "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
