"""SpecMemo trade-off: throughput and peak memory of speculative decoding with and
without the memory planner, each configuration in its own process (peak RSS is the
process's own), against plain greedy decoding of the same batch.

    python -m bench.specmemo PKG --budget MB [--batch 8] [--max-draft 16] [--data jfleg|ids]
        [--draft input|ngram|layers|model:DRAFT]

The planner keeps as much draft length and batch as fit the budget; "generation memory"
is peak RSS minus the RSS after loading the package and one short warm-up call (weights
and the runtime's first-call allocations); the planned row also shows the plan's
predicted total next to the measured peak. "rows" decodes the batch's inputs one after
another (speculate_rows=True), each advancing by its own accepted drafts."""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.machine import rss_mb


# plain greedy, batched and one input at a time (what speculating row by row falls back to
# when drafts miss); speculation with rows in lockstep, unplanned and planned; planned,
# each row speculated on its own (speculate_rows)
CONFIGS = ("plain", "plain_rows", "speculative", "planned", "rows")


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> dict:
    from bench.speculative import load_inputs, load_with_drafters
    # a draft model's engine is loaded in every configuration, so all pay for its weights
    engine, (draft,) = load_with_drafters(args.package, [args.draft], args.threads)
    inputs = load_inputs(args.data, args.limit, engine.arch.vocab_size)
    # rerank_source (an editing package's default) would add one scoring pass to every config
    opts = dict(max_new_tokens=args.max_new_tokens, rerank_source=False, draft=None)
    if not args.config.startswith("plain"):
        opts.update(draft=draft, max_draft=args.max_draft, adaptive_draft=False,
                    speculate_rows=args.config == "rows")
    if args.config in ("planned", "rows"):
        opts["memory_budget_mb"] = args.budget
    engine.generate(inputs[0], max_new_tokens=2, draft=None)  # first-call allocations are the runtime's
    if not isinstance(draft, str):  # a draft model's engine
        draft.generate(inputs[0], max_new_tokens=2, draft=None)
    loaded = rss_mb()
    try:  # the peak (VmHWM) restarts from the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    start, tokens, predicted = time.perf_counter(), 0, 0.0
    step = 1 if args.config == "plain_rows" else args.batch
    for i in range(0, len(inputs), step):
        for r in engine.generate(inputs[i:i + step], **opts):
            tokens += len(r.token_ids)
            if r.stats.memory_plan:
                predicted = max(predicted, r.stats.memory_plan["predicted"]["total"] / 2**20)
    seconds = time.perf_counter() - start
    peak = _peak_mb()
    return {"config": args.config, "tokens_per_s": tokens / seconds, "peak_rss_mb": peak,
            "loaded_rss_mb": loaded, "generation_mb": peak - loaded,
            "predicted_total_mb": predicted or None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--budget", type=float, required=True, metavar="MB")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-draft", type=int, default=16)
    ap.add_argument("--draft", default="input")
    ap.add_argument("--data", default="jfleg", choices=["jfleg", "news", "ids"])
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", choices=CONFIGS, help="child mode")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.config:
        print(json.dumps(child(args)))
        return 0
    rows = []
    base = [a for a in (argv or sys.argv[1:]) if a != "--config"]
    for config in CONFIGS:
        out = subprocess.run([sys.executable, "-m", "bench.specmemo", *base, "--config", config],
                             capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if out.returncode != 0:
            rows.append({"config": config, "error": out.stderr.strip().splitlines()[-1:]})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ok = {r["config"]: r for r in rows if "error" not in r}
    print(f"budget {args.budget:.0f} MB, batch {args.batch}, max draft {args.max_draft}, "
          f"draft={args.draft}, {args.threads} threads\n")
    print("| config | tokens/s | peak RSS MB (predicted) | generation MB | vs unplanned speculation |")
    print("| --- | --- | --- | --- | --- |")
    spec = ok.get("speculative")
    for r in rows:
        if "error" in r:
            print(f"| {r['config']} | failed: {r['error']} | | | |")
            continue
        rel = (f"{r['tokens_per_s'] / spec['tokens_per_s']:.0%} throughput, "
               f"{r['generation_mb'] / max(spec['generation_mb'], 1e-9):.0%} memory") if spec else ""
        predicted = f" ({r['predicted_total_mb']:.0f})" if r.get("predicted_total_mb") else ""
        print(f"| {r['config']} | {r['tokens_per_s']:.1f} | {r['peak_rss_mb']:.0f}{predicted} | "
              f"{r['generation_mb']:.0f} | {rel} |")
    if args.out:
        from bench.machine import machine_info, write_json
        write_json(args.out, "specmemo.json", {
            "package": args.package, "budget_mb": args.budget, "batch": args.batch,
            "max_draft": args.max_draft, "draft": args.draft, "data": args.data,
            "inputs": args.limit, "machine": machine_info(args.threads), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
