"""Speculative decoding benchmark: speedup over plain greedy decoding of the SAME package
in the same run (median of repeats), acceptance statistics, and whether every output is
token-identical to plain greedy.

    python -m bench.speculative PKG [--data jfleg|news|ids] [--drafters input,ngram,layers,skip:1+2]
        [--limit N] [--repeats 3] [--threads 2] [--batch 1] [--speculate-rows auto]
        [--interleave N] [--provider cpu|cuda|...] [--shared DIR] [--out DIR]

--data jfleg: the 754 JFLEG dev sentences, detokenised (grammar correction copies most
of its input);
--data ids: random token ids (for ids-only packages such as random-weight shapes).
Drafter "skip:I+J": layer drafting that skips decoder layers I and J (0-based);
"exit:E": layer drafting from exit layer E; "model:PKG": that package drafts.
A drafter's suffix "@K" fixes its drafts at K tokens (adaptive_draft=False), e.g.
"exit:1@4" or "model:PKG@8": where the adaptive planner stands against a fixed choice.
--interleave N: each repeat runs every configuration on N inputs before going on to the
next N (the order turning each chunk), so a machine whose speed drifts within a repeat
(a GPU host's clocks: plain greedy's blocks of 50 JFLEG sentences ran 1.6-2.5 s on an
H200) slows every configuration alike; 0 (default): each configuration over all inputs.
--interleave 1 pairs configurations closest, each input decoded by each in turn: on the
noisy 2-core AMD EPYC, plain greedy against itself ("none" below; 100 JFLEG sentences,
3 repeats) measured a paired 0.93x [0.90-0.97] with --interleave 25, and 1.00x
[1.00-1.01], 1.02x [0.99-1.03] with --interleave 1 (ad hoc): use 1 to test the 5% rule.
Drafter "oracle": drafts the plain greedy output itself (every draft right): the most any
drafter could give this package on this machine, against which the others stand.
Drafter "none": plain greedy again, a control: its speedup (1.00x on a quiet machine)
shows how far this run's noise alone moves a ratio.

Besides the ratio of median total times, each row has a paired speedup: each call's
median over the repeats, summed, against plain's, with a 95% bootstrap interval over
chunks of consecutive calls (bench/paired_speedup.py), and what that interval shows of
the rule that no drafter is more than 5% slower than plain greedy (holds, broken or
unresolved)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.paired_speedup import PairedSpeedup, paired_speedup
from bench.timing import turn_order

SHARED = Path(__file__).resolve().parents[2] / "shared"


def model_package(spec: str) -> str | None:
    """The package a "model:PKG" drafter spec names; None for other drafters."""
    return spec[len("model:"):] if spec.startswith("model:") else None


def load_with_drafters(package: str, specs: list[str], threads: int, provider: str = "cpu"):
    """The target engine, and per drafter spec its drafter: a draft engine for
    "model:PKG", else the spec itself. With a draft model both engines share one thread
    pool, as the CLI does (separate spinning pools take each other's cores; see
    runtime/spec_setup.py)."""
    import edgeseq
    shared = any(model_package(spec) for spec in specs)

    def load(path: str):
        return edgeseq.load(path, threads=threads, provider=provider, shared_pool=shared)

    def drafter(spec: str):
        if model_package(spec):
            return load(model_package(spec))
        return None if spec == CONTROL else spec
    return load(package), [drafter(spec) for spec in specs]


CONTROL = "none"  # the drafter spec of plain greedy run again (the noise control)


def load_inputs(kind: str, limit: int, vocab: int, shared: Path = SHARED) -> list:
    if kind == "jfleg":  # plain text, as a user would type it (JFLEG ships tokenised)
        from edgeseq.quality import jfleg_detokenize
        lines = (shared / "data" / "jfleg-dev" / "dev.src").read_text().splitlines()
        return [jfleg_detokenize(l) for l in lines if l.strip()][:limit]
    if kind == "news":
        return (shared / "data" / "news" / "flores200-devtest.en").read_text().splitlines()[:limit]
    rng = np.random.default_rng(0)
    return [rng.integers(5, min(vocab, 30000), 32).tolist() for _ in range(limit)]


def run_config(engine, inputs: list, draft, args, schedule: str = "auto",
               fixed: int | None = None) -> dict:
    """Decode every input once (in order, `args.batch` per call); return wall time,
    outputs and each call's (or, row by row, each row's) statistics. `fixed`: drafts of
    that many tokens, the planner off."""
    # rerank_source (a package default of editing models) adds the same two passes to
    # every configuration after decoding; off unless asked, so the drafters are compared
    opts = dict(max_new_tokens=args.max_new_tokens, max_draft=args.max_draft,
                rerank_source=args.rerank_source, copy_bias=args.copy_bias)
    if isinstance(draft, str) and draft.startswith("skip:"):  # layer drafting with a skip set
        opts["draft_skip"] = tuple(int(i) for i in draft[len("skip:"):].split("+"))
        draft = "layers"
    if isinstance(draft, str) and draft.startswith("exit:"):  # layer drafting from one exit
        opts["exit_layer"] = int(draft[len("exit:"):])
        draft = "layers"
    if fixed is not None:
        opts.update(max_draft=fixed, adaptive_draft=False)
    if isinstance(draft, OracleDrafter):  # as long as input drafting's drafts
        from edgeseq.runtime.options import INPUT_MAX_DRAFT
        opts["max_draft"] = args.max_draft or INPUT_MAX_DRAFT
    opts["draft"] = draft  # None: plain greedy (a call without draft= would use "auto")
    if draft is not None:
        opts["speculate_rows"] = SCHEDULES[schedule]
    if args.memory_budget:
        opts["memory_budget_mb"] = args.memory_budget
    outputs, stats, call_seconds = [], [], []
    start = time.perf_counter()
    for i in range(0, len(inputs), args.batch):
        chunk = inputs[i:i + args.batch]
        began = time.perf_counter()
        results = engine.generate(chunk, **opts) if args.batch > 1 else [engine.generate(chunk[0], **opts)]
        call_seconds.append(time.perf_counter() - began)
        outputs += [r.token_ids for r in results]
        stats += list({id(r.stats): r.stats for r in results}.values())  # rows decoded together share one
    return {"seconds": time.perf_counter() - start, "outputs": outputs, "stats": stats,
            "call_seconds": call_seconds}


def run_repeat(engine, inputs: list, configs: list, args, rep: int) -> dict[str, dict]:
    """One repeat of every configuration (name, drafter, schedule, fixed length): each over
    all inputs, the order turning each repeat so drift on a shared machine favours none;
    or with args.interleave = N, every configuration over each chunk of N inputs in turn
    (the order turning each chunk), their results joined per configuration. Each
    configuration's calls teach an n-gram cache of its own, empty at each repeat's start:
    the n-gram drafter learns from its own outputs only, not from plain greedy's."""
    size = args.interleave or len(inputs)
    joined: dict[str, dict] = {}
    caches = {name: type(engine.ngram)() for name, _, _, _ in configs}
    for number, first in enumerate(range(0, len(inputs), size)):
        for name, draft, schedule, fixed in turn_order(configs, rep, number):
            engine.ngram = caches[name]
            res = run_config(engine, inputs[first:first + size], draft, args, schedule, fixed)
            into = joined.setdefault(name, {"seconds": 0.0, "outputs": [], "stats": [],
                                            "call_seconds": []})
            into["seconds"] += res["seconds"]
            for key in ("outputs", "stats", "call_seconds"):
                into[key] += res[key]
    return {name: joined[name] for name, _, _, _ in configs}


LENGTH_BUCKETS = (16, 32, 48)  # source tokens; the default model was trained on <= 48


def by_length(lengths: list[int], runs: list[list[float]], plain_runs: list[list[float]]) -> dict:
    """Speedup per source-length bucket (batch 1): each input's median seconds over the
    repeats, summed per bucket, against plain greedy's."""
    def medians(repeats: list[list[float]]) -> list[float]:
        return [float(np.median(col)) for col in zip(*repeats)]
    mine, plain = medians(runs), medians(plain_runs)
    out = {}
    for low, high in zip((0,) + LENGTH_BUCKETS, LENGTH_BUCKETS + (None,)):
        picked = [i for i, n in enumerate(lengths) if n > low and (high is None or n <= high)]
        if picked:
            name = f"{low + 1}-{high}" if high else f">{low}"
            out[name] = {"inputs": len(picked), "speedup": sum(plain[i] for i in picked) /
                         sum(mine[i] for i in picked)}
    return out


SCHEDULES = {"auto": None, "rows": True, "lockstep": False}  # --speculate-rows


class OracleDrafter:
    """Proposes the rest of the package's own greedy output (known from a plain run), as a
    caller's drafter: every draft is accepted, so what remains is the encoder, verify
    passes over the whole output and the bookkeeping: the ceiling of drafting here.
    Where a verify pass chose differently from the plain run (a near-tie of a decoder that
    is not row-invariant, see "Exactness" in docs/design.md) the output has left the known
    one, and it proposes nothing more: one such sentence that ran to max_new_tokens once cost 94 rejected
    verify passes."""

    def __init__(self, engine, inputs: list, outputs: list[list[int]]):
        source = [engine.codec.encode(x) if isinstance(x, str) else x for x in inputs]
        self.expected = {tuple(ids): out for ids, out in zip(source, outputs)}

    def propose(self, ctx):
        from edgeseq.runtime.drafters import Draft
        rows = []
        for src, out in zip(ctx.source, ctx.output):
            known, done = self.expected[tuple(src)], len(out) - 1
            rows.append(known[done:][:ctx.limit] if known[:done] == out[1:] else [])
        width = max(len(r) for r in rows)
        return Draft(np.array([r + [-1] * (width - len(r)) for r in rows], np.int64).reshape(len(rows), width))

    def update(self, drafted: int, accepted: int) -> None:
        pass


def _spec_totals(stats) -> dict:
    keys = ("drafted", "accepted", "verify_passes")
    tot = {k: sum(s.speculation[k] for s in stats if s.speculation) for k in keys}
    hist: dict[str, int] = {}
    for s in stats:
        for k, v in (s.speculation or {}).get("accepted_histogram", {}).items():
            hist[k] = hist.get(k, 0) + v
    tot["acceptance_rate"] = tot["accepted"] / tot["drafted"] if tot["drafted"] else 0.0
    passes = tot["verify_passes"]
    emitted = sum(s.speculation["emitted"] for s in stats if s.speculation)
    tot["tokens_per_pass"] = emitted / passes if passes else 0.0
    tot["histogram"] = hist
    return tot


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--data", default="jfleg", choices=["jfleg", "news", "ids"])
    ap.add_argument("--drafters", default="input,ngram,layers")
    ap.add_argument("--limit", type=int, default=754)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1, help="inputs per generate call (default 1)")
    ap.add_argument("--speculate-rows", default="auto",
                    help="a speculating batch: comma-separated of auto (measured), rows (one "
                         "after another), lockstep (together); each is a configuration")
    ap.add_argument("--max-new-tokens", type=int, default=None,
                    help="default: 160 for jfleg (its longest source is 102 tokens), else 64")
    ap.add_argument("--max-draft", type=int, default=None,
                    help="most draft tokens per pass (default: the runtime's, 64 for input, else 8)")
    ap.add_argument("--rerank-source", action="store_true",
                    help="rerank_source=True in every configuration (off by default here)")
    ap.add_argument("--copy-bias", type=float, default=None,
                    help="copy_bias in every configuration (default: the package's)")
    ap.add_argument("--memory-budget", type=float, default=None, metavar="MB",
                    help="run every configuration under this budget (SpecMemo planner)")
    ap.add_argument("--interleave", type=int, default=0, metavar="N",
                    help="run every configuration on N inputs at a time (see above)")
    ap.add_argument("--provider", default="cpu", help="execution provider (cpu, cuda, ...)")
    ap.add_argument("--shared", type=Path, default=SHARED,
                    help="the folder holding data/ (default: ../shared beside the project)")
    ap.add_argument("--out", type=Path)
    return ap


def _configs(specs: list[tuple[str, str, str]], loaded: list, schedules: list[str]) -> list:
    """(name, drafter, how a speculating batch is scheduled, fixed draft length) per
    configuration, plain greedy first. The control drafts nothing: one schedule is all."""
    drafters = []  # (name, drafter, fixed draft length or None)
    for (spec, _, fixed), drafter in zip(specs, loaded):
        drafters.append(((spec if isinstance(drafter, str) or drafter is None else "model")
                         + (f"@{fixed}" if fixed else ""),
                         drafter, int(fixed) if fixed else None))
    return [("plain", None, "auto", None)] + [
        (name + (f" ({sched})" if len(schedules) > 1 and d is not None else ""), d, sched, fixed)
        for name, d, fixed in drafters for sched in (schedules if d is not None else schedules[:1])]


def _rows(configs: list, times: dict[str, list[float]], calls: dict[str, list[list[float]]],
          last: dict[str, dict], lengths: list[int], args) -> list[dict]:
    """A table row per configuration: median times, speedups, identical outputs, and
    (besides plain) the paired speedup and acceptance statistics."""
    controls = {name for name, d, _, _ in configs[1:] if d is None}  # plain again: no drafts
    plain = last["plain"]["outputs"]
    base = float(np.median(times["plain"]))
    rows = []
    for name, _, _, _ in configs:
        med = float(np.median(times[name]))
        outs = last[name]["outputs"]
        row = {"drafter": name, "seconds_median": med, "seconds_min": min(times[name]),
               "seconds_max": max(times[name]), "speedup": base / med,
               "tokens": sum(len(o) for o in outs),
               "identical_outputs": sum(a == b for a, b in zip(outs, plain)), "inputs": len(outs)}
        if name != "plain":
            row["paired"] = paired_speedup(calls["plain"], calls[name],
                                           max(1, (args.interleave or 25) // args.batch)).to_json()
            if name not in controls:
                row.update(_spec_totals(last[name]["stats"]))
            if args.batch == 1:
                row["by_source_length"] = by_length(lengths, calls[name], calls["plain"])
        rows.append(row)
    return rows


def _print_table(rows: list[dict], n_inputs: int, args) -> None:
    batching = f", batches of {args.batch} ({args.speculate_rows})" if args.batch > 1 else ""
    print(f"\n{n_inputs} inputs ({args.data}), {Path(args.package).name}, {args.provider}, "
          f"{args.threads} threads"
          f"{batching}, median of {args.repeats}\n")
    print("| drafter | time s (min-max) | speedup vs plain | paired speedup [95%] | 5% rule "
          "| identical to plain | acceptance | tokens/pass |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        paired = PairedSpeedup.from_json(r["paired"]).cells() if "paired" in r else ["-", "-"]
        print(f"| {r['drafter']} | {r['seconds_median']:.2f} ({r['seconds_min']:.2f}-{r['seconds_max']:.2f}) "
              f"| {r['speedup']:.2f}x | {' | '.join(paired)} | "
              f"{r['identical_outputs']}/{r['inputs']} "
              f"| {r.get('acceptance_rate', 0):.2f} | {r.get('tokens_per_pass', 1):.2f} |")
    if args.batch == 1 and len(rows) > 1:
        buckets = list(rows[1]["by_source_length"])
        print("\nspeedup by source tokens (inputs): " + ", ".join(
            f"{b} ({rows[1]['by_source_length'][b]['inputs']})" for b in buckets))
        for r in rows[1:]:
            print(f"  {r['drafter']}: " + ", ".join(
                f"{b} {r['by_source_length'][b]['speedup']:.2f}x" for b in buckets))


def main(argv: list[str] | None = None) -> int:
    from bench.machine import machine_info, write_json
    ap = _parser()
    args = ap.parse_args(argv)
    if args.max_new_tokens is None:
        args.max_new_tokens = 160 if args.data == "jfleg" else 64
    schedules = args.speculate_rows.split(",") if args.batch > 1 else ["auto"]
    if set(schedules) - set(SCHEDULES):
        ap.error(f"--speculate-rows takes {', '.join(SCHEDULES)}; got {args.speculate_rows}")
    specs = [spec.partition("@") for spec in filter(None, args.drafters.split(","))]
    engine, loaded = load_with_drafters(args.package, [spec for spec, _, _ in specs],
                                        args.threads, args.provider)
    inputs = load_inputs(args.data, args.limit, engine.arch.vocab_size, args.shared)
    lengths = [len(engine.codec.encode(x)) if isinstance(x, str) else len(x) for x in inputs]
    configs = _configs(specs, loaded, schedules)
    names = [config[0] for config in configs]
    if "oracle" in names:  # its drafts: the plain outputs (this run also warms up)
        oracle = OracleDrafter(engine, inputs, run_config(engine, inputs, None, args)["outputs"])
        configs = [(n, oracle if d == "oracle" else d, sch, k) for n, d, sch, k in configs]
    else:
        run_config(engine, inputs[:8], None, args)  # warm-up
    times: dict[str, list[float]] = {n: [] for n in names}
    calls: dict[str, list[list[float]]] = {n: [] for n in names}  # per repeat, per call
    last: dict[str, dict] = {}
    for rep in range(args.repeats):
        for name, res in run_repeat(engine, inputs, configs, args, rep).items():
            times[name].append(res["seconds"])
            calls[name].append(res["call_seconds"])
            last[name] = res
            print(f"[{rep + 1}/{args.repeats}] {name}: {res['seconds']:.2f} s", flush=True)
    rows = _rows(configs, times, calls, last, lengths, args)
    _print_table(rows, len(inputs), args)
    if args.out:
        write_json(args.out, "speculative.json", {
            "machine": machine_info(args.threads), "package": args.package,
            "provider": args.provider,
            "manifest_sha": engine.manifest.files["weights.bin"]["sha256"],
            "data": args.data, "batch": args.batch, "speculate_rows": args.speculate_rows,
            "copy_bias": args.copy_bias, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
