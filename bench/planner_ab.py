"""Settings of the draft planner against each other and against plain greedy, in one run.

    python -m bench.planner_ab PKG [--drafter layers] [--stay-on 1.08,1.0] [--data jfleg]
        [--limit 754] [--rounds 4] [--runs 1] [--against REV] [--threads 2] [--out DIR]

One engine per setting and one for plain greedy, all on one shared thread pool (so no
idle pool spins beside the one working), each setting's with its own planner kept across
calls; every input is decoded by plain greedy and by each setting in turn, the order
turning from input to input, so drift on a shared machine favours none. Per setting: the
paired speedup over plain greedy with its 95% interval (bench/paired_speedup.py: each
input's median over the rounds), the paired speedup over the first setting, and the
outputs identical to plain greedy's, and plain greedy's decoder passes over its verify
passes (how much it drafted). The setting compared: `--stay-on`, the predicted gain
below which drafting that is on switches off (DraftController.stay_on_gain; switching on
needs ON_GAIN). With `--against REV`, the planner of git revision REV (its
runtime/draft_control.py and the modules it imports from runtime/, loaded apart) against
this one instead, each at the first --stay-on value. With `--runs N`, all of it N times
over, with fresh engines and planners each time, then every run's inputs pooled: a
planner can settle in a different state from one run to the next (layer drafting on
JFLEG dev: one planner against the same planner read 1.016x and 1.095x in two runs), a
spread the pooled interval, over inputs, does not cover; the per-run figures show it."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.paired_speedup import paired_speedup
from bench.speculative import SHARED, load_inputs
from bench.timing import turn_order

CHUNK = 25  # consecutive inputs a burst of load hits together (the bootstrap's unit)
REPO = Path(__file__).resolve().parents[1]


def planner_at(rev: str) -> type:
    """The DraftController class of git revision `rev`: its runtime/draft_control.py and
    the runtime modules that imports, written to a temporary package and loaded from there."""
    package = Path(tempfile.mkdtemp(prefix="planner-ab-")) / "planner_at_rev"
    package.mkdir()
    (package / "__init__.py").write_text("")
    wanted, copied = ["draft_control"], set()
    while wanted:
        name = wanted.pop()
        source = subprocess.run(["git", "show", f"{rev}:runtime/{name}.py"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout
        (package / f"{name}.py").write_text(source)
        copied.add(name)
        wanted += [m for m in re.findall(r"^from \.(\w+) import", source, re.M) if m not in copied]
    spec = importlib.util.spec_from_file_location(
        package.name, package / "__init__.py", submodule_search_locations=[str(package)])
    sys.modules[package.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[package.name])
    return _taking_call_figures(importlib.import_module(f"{package.name}.draft_control").DraftController)


def _taking_call_figures(controller: type) -> type:
    """A planner from before plan() took the call's own drafts (`call`), as the drafting
    loop now passes them: it plans without them, as it did."""
    if "call" in inspect.signature(controller.plan).parameters:
        return controller

    class Planner(controller):
        def plan(self, situation=None, call=None):
            return super().plan(situation)
    Planner.__module__, Planner.__qualname__ = controller.__module__, controller.__qualname__
    return Planner


def load_arms(package: str, stay_on: list[float], drafter: str, threads: int,
              options: dict, baseline: type | None = None) -> tuple:
    """An engine for plain greedy, and an engine per setting, its planner (for these
    options) set to it; with `baseline` (a DraftController class), the first setting's
    planner is made from it."""
    import edgeseq
    plain, engines = edgeseq.load(package, threads=threads, shared_pool=True), []
    for arm, gain in enumerate(stay_on):
        engine = edgeseq.load(package, threads=threads, shared_pool=True)
        if arm == 0 and baseline is not None:  # before the engine makes its own
            opts = engine._options({"draft": drafter, **options})
            engine._figures.get("controller", opts, 1, lambda: baseline(opts.max_draft))
        engine.draft_planner(draft=drafter, **options).stay_on_gain = gain
        engines.append(engine)
    return plain, engines


def run_rounds(plain, engines: list, inputs: list, drafter: str, options: dict,
               rounds: int) -> dict:
    """Per arm ("plain", then one per engine) and round, each input's seconds; each arm's
    outputs of the first round; and each arm's verify passes over all rounds (plain:
    its decoder passes). Plain greedy decodes on an engine of its own (`plain`), so no
    setting shares its buffers and caches with plain greedy's calls."""
    arms = ["plain"] + list(range(len(engines)))
    seconds = {arm: [[] for _ in range(rounds)] for arm in arms}
    outputs: dict = {arm: [] for arm in arms}
    passes = dict.fromkeys(arms, 0)
    for round_ in range(rounds):
        for i, item in enumerate(inputs):
            for arm in turn_order(arms, round_, i):
                engine, opts = (plain, {**options, "draft": None}) if arm == "plain" else \
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


def pool(runs: list[dict]) -> dict:
    """Several runs of run_rounds as one: each round's inputs, outputs and passes
    concatenated run after run."""
    arms, rounds = runs[0]["seconds"].keys(), len(next(iter(runs[0]["seconds"].values())))
    return {"seconds": {arm: [[t for run in runs for t in run["seconds"][arm][r]]
                              for r in range(rounds)] for arm in arms},
            "outputs": {arm: [o for run in runs for o in run["outputs"][arm]] for arm in arms},
            "passes": {arm: sum(run["passes"][arm] for run in runs) for arm in arms}}


def describe(name: str, row: dict, inputs: int) -> str:
    """One setting's line of the report."""
    def ratio(paired: dict) -> str:
        return f"{paired['speedup']:.3f}x [{paired['ci95'][0]:.3f}-{paired['ci95'][1]:.3f}]"
    return (f"{name}: {ratio(row['vs_plain'])} plain, {ratio(row['vs_first'])} the first "
            f"setting, identical {row['identical']}/{inputs}, plain's passes / its verify "
            f"passes {row['passes_ratio']:.2f}")


def main(argv: list[str] | None = None) -> int:
    from bench.machine import machine_info, write_json
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--drafter", default="layers", help="input, ngram or layers")
    ap.add_argument("--stay-on", default="1.08,1.0", help="stay-on gains to compare, comma-separated")
    ap.add_argument("--data", default="jfleg", choices=["jfleg", "news", "ids"])
    ap.add_argument("--limit", type=int, default=754)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=1, help="whole runs, each with fresh planners")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--against", metavar="REV", help="compare the planner of this git revision "
                    "with the working tree's")
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    stay_on = [float(x) for x in a.stay_on.split(",")]
    if a.against:
        stay_on = stay_on[:1] * 2
    options = {"max_new_tokens": a.max_new_tokens, "rerank_source": False}
    baseline = planner_at(a.against) if a.against else None
    names = [f"planner at {a.against}", "this planner"] if a.against else \
        [f"stay on down to {gain:.2f}" for gain in stay_on]
    runs, by_run = [], []
    for run in range(a.runs):
        plain, engines = load_arms(a.package, stay_on, a.drafter, a.threads, options, baseline)
        inputs = load_inputs(a.data, a.limit, plain.arch.vocab_size, a.shared)
        for engine in [plain, *engines]:  # warm-up, outside the planners' figures
            for item in inputs[:4]:
                engine.generate(item, **options, draft=None)
        runs.append(run_rounds(plain, engines, inputs, a.drafter, options, a.rounds))
        rows = compare(runs[-1], stay_on)
        if run == 0:
            print(f"{len(inputs)} inputs ({a.data}), {a.package}, draft={a.drafter}, "
                  f"{a.rounds} rounds" + (f", {a.runs} runs" if a.runs > 1 else ""))
        for name, row in zip(names, rows):
            row["arm"] = name
            print(("" if a.runs == 1 else f"run {run + 1}, ") + describe(name, row, len(inputs)))
        # each arm's planner as it ended: its setting read back, and what it measured
        by_run.append({"rows": rows, "planners": [
            {"module": type(p).__module__, "stay_on_gain": p.stay_on_gain, **p.summary()}
            for p in (e.draft_planner(draft=a.drafter, **options) for e in engines)]})
    if a.runs > 1:
        rows = compare(pool(runs), stay_on)
        for name, row in zip(names, rows):
            row["arm"] = name
            print(f"pooled over {a.runs} runs, " + describe(name, row, a.runs * len(inputs)))
    if a.out:
        write_json(a.out, "planner_ab.json", {
            "machine": machine_info(a.threads), "package": a.package, "drafter": a.drafter,
            "data": a.data, "inputs": len(inputs), "rounds": a.rounds, "runs": a.runs,
            "against": a.against, "rows": rows, "planners": by_run[-1]["planners"],
            "by_run": by_run if a.runs > 1 else None})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
