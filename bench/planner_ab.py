"""Settings of the draft planner against each other and against plain greedy, in one run.

    python -m bench.planner_ab PKG [--drafter layers] [--stay-on 1.08,1.0] [--data jfleg]
        [--limit 754] [--rounds 4] [--threads 2] [--out DIR]

One engine per setting, all on one shared thread pool (so no idle pool spins beside the
one working), each with its own planner kept across calls; every input is decoded by
plain greedy and by each setting in turn, the order turning from input to input, so
drift on a shared machine favours none. Per setting: the paired speedup over plain
greedy with its 95% interval (bench/paired_speedup.py: each input's median over the
rounds), the paired speedup over the first setting, and the outputs identical to plain
greedy's, and plain greedy's decoder passes over its verify passes (how much it drafted). The
setting compared: `--stay-on`, the predicted gain below which drafting
that is on switches off (DraftController.stay_on_gain; switching on needs ON_GAIN)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.paired_speedup import paired_speedup
from bench.speculative import SHARED, load_inputs
from bench.timing import turn_order

CHUNK = 25  # consecutive inputs a burst of load hits together (the bootstrap's unit)


def load_arms(package: str, stay_on: list[float], drafter: str, threads: int,
              options: dict) -> list:
    """An engine per setting, its planner (for these options) set to it."""
    import edgeseq
    engines = []
    for gain in stay_on:
        engine = edgeseq.load(package, threads=threads, shared_pool=True)
        engine.draft_planner(draft=drafter, **options).stay_on_gain = gain
        engines.append(engine)
    return engines


def run_rounds(engines: list, inputs: list, drafter: str, options: dict, rounds: int) -> dict:
    """Per arm ("plain", then one per engine) and round, each input's seconds; each arm's
    outputs of the first round; and each arm's verify passes over all rounds (plain:
    its decoder passes)."""
    arms = ["plain"] + list(range(len(engines)))
    seconds = {arm: [[] for _ in range(rounds)] for arm in arms}
    outputs: dict = {arm: [] for arm in arms}
    passes = dict.fromkeys(arms, 0)
    for round_ in range(rounds):
        for i, item in enumerate(inputs):
            for arm in turn_order(arms, round_, i):
                engine, opts = (engines[0], options) if arm == "plain" else \
                    (engines[arm], {**options, "draft": drafter})
                began = time.perf_counter()
                result = engine.generate(item, **opts)
                seconds[arm][round_].append(time.perf_counter() - began)
                spec = result.stats.speculation
                passes[arm] += spec["verify_passes"] if spec else result.stats.decoder_passes
                if round_ == 0:
                    outputs[arm].append(result.token_ids)
    return {"seconds": seconds, "outputs": outputs, "passes": passes}


def compare(runs: dict, stay_on: list[float]) -> list[dict]:
    seconds, outputs = runs["seconds"], runs["outputs"]
    rows = []
    for arm, gain in enumerate(stay_on):
        rows.append({
            "stay_on_gain": gain,
            "vs_plain": paired_speedup(seconds["plain"], seconds[arm], CHUNK).to_json(),
            "vs_first": paired_speedup(seconds[0], seconds[arm], CHUNK).to_json(),
            "identical": sum(a == b for a, b in zip(outputs[arm], outputs["plain"])),
            # plain greedy's passes over this setting's verify passes: tokens per verify pass
            "passes_ratio": runs["passes"]["plain"] / max(runs["passes"][arm], 1),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    from bench.machine import machine_info, write_json
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--drafter", default="layers", help="input, ngram or layers")
    ap.add_argument("--stay-on", default="1.08,1.0", help="stay-on gains to compare, comma-separated")
    ap.add_argument("--data", default="jfleg", choices=["jfleg", "news", "ids"])
    ap.add_argument("--limit", type=int, default=754)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    stay_on = [float(x) for x in a.stay_on.split(",")]
    options = {"max_new_tokens": a.max_new_tokens, "rerank_source": False}
    engines = load_arms(a.package, stay_on, a.drafter, a.threads, options)
    inputs = load_inputs(a.data, a.limit, engines[0].arch.vocab_size, a.shared)
    for engine in engines:  # warm-up, outside the planners' figures
        for item in inputs[:4]:
            engine.generate(item, **options)
    rows = compare(run_rounds(engines, inputs, a.drafter, options, a.rounds), stay_on)
    print(f"{len(inputs)} inputs ({a.data}), {a.package}, draft={a.drafter}, {a.rounds} rounds")
    for row in rows:
        plain, first = row["vs_plain"], row["vs_first"]
        print(f"stay on down to {row['stay_on_gain']:.2f}: {plain['speedup']:.3f}x plain "
              f"[{plain['ci95'][0]:.3f}-{plain['ci95'][1]:.3f}], {first['speedup']:.3f}x the first "
              f"setting [{first['ci95'][0]:.3f}-{first['ci95'][1]:.3f}], "
              f"identical {row['identical']}/{len(inputs)}, plain's passes / its verify passes "
              f"{row['passes_ratio']:.2f}")
    if a.out:  # each arm's planner as it ended: its setting read back, and what it measured
        planners = [e.draft_planner(draft=a.drafter, **options) for e in engines]
        write_json(a.out, "planner_ab.json", {
            "machine": machine_info(a.threads), "package": a.package, "drafter": a.drafter,
            "data": a.data, "inputs": len(inputs), "rounds": a.rounds, "rows": rows,
            "planners": [{"stay_on_gain": p.stay_on_gain, **p.summary()} for p in planners]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
