"""Speed and quality of lossy layer skipping against the full model, in one run, on the
JFLEG dev set (GLEU against the four references, next to the no-change baseline):
each exit layer, unified skipping at several ratios, confidence early exit (CALM) at
several thresholds. With --compare PKG (the same architecture trained without the exit
loss), also self-speculative drafting (`draft="layers"`, lossless) on both.

    python -m bench.skip PKG [--compare PKG_NO_EXIT [--exit-trained PKG_EXIT]] [--limit 754]
                             [--threads 2] [--out DIR]"""
from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

from bench.machine import write_json

SHARED = Path(__file__).resolve().parents[2] / "shared"
# the longest JFLEG dev source is 102 tokens: a cap of 64 would cut 14 corrections short
MAX_NEW_TOKENS = 160


def run(engine, sources: list[str], **options) -> dict:
    outputs, layers, tokens = [], 0.0, 0
    start = time.perf_counter()
    for text in sources:
        r = engine.generate(text, max_new_tokens=MAX_NEW_TOKENS, **{"draft": None, **options})
        outputs.append(r.text)
        layers += r.stats.layers_per_token * len(r.token_ids)
        tokens += len(r.token_ids)
    seconds = time.perf_counter() - start
    return {"outputs": outputs, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "layers_per_token": layers / max(1, tokens), "options": options}


def score(jfleg, outputs: list[str]) -> float:
    from edgeseq.quality import gleu, jfleg_tokenize
    return gleu(jfleg.sources, [jfleg_tokenize(o) for o in outputs], jfleg.references)


def configs(layers: int, ratios: tuple[float, ...] = (1.33, 2.0)) -> list[tuple[str, dict]]:
    """The full model, each exit below it, unified skipping at `ratios`, CALM thresholds
    (bench/skip_whisper.py runs the same rows)."""
    rows = [("full model", {})]
    rows += [(f"exit after layer {k}", {"exit_after": k}) for k in range(1, layers)]
    rows += [(f"unified skip {r}x", {"skip_ratio": r}) for r in ratios]
    rows += [(f"confidence exit >= {t}", {"exit_threshold": t}) for t in (0.5, 0.7, 0.9)]
    return rows


def main(argv: list[str] | None = None) -> int:
    import edgeseq
    from edgeseq.quality import jfleg_detokenize, load_jfleg
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--compare", help="same architecture trained without the exit loss")
    ap.add_argument("--exit-trained", help="the exit-trained package --compare is set against "
                    "(default: PKG; pass one trained for as many steps as --compare's)")
    ap.add_argument("--limit", type=int, default=754)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    full = load_jfleg(SHARED / "data" / "jfleg-dev")
    jfleg = type(full)(full.sources[:args.limit], [refs[:args.limit] for refs in full.references])
    sources = [jfleg_detokenize(s) for s in jfleg.sources]
    engine = edgeseq.load(args.package, threads=args.threads)
    engine.generate(sources[0], max_new_tokens=8, draft=None)  # warm-up
    rows = []
    baseline = score(jfleg, sources)
    full_time = None
    rows_to_run = configs(engine.arch.decoder_layers)
    rows_to_run.insert(1, ("full model, without rerank_source", {"rerank_source": False}))
    for name, options in rows_to_run:
        res = run(engine, sources, **options)
        full_time = full_time or res["seconds"]
        rows.append({"config": name, "gleu": score(jfleg, res["outputs"]),
                     "tokens_per_s": res["tokens_per_s"], "speedup": full_time / res["seconds"],
                     "layers_per_token": res["layers_per_token"]})
        print(f"{name}: GLEU {rows[-1]['gleu']:.4f}, {res['tokens_per_s']:.0f} tok/s", flush=True)
    spec_rows = []
    del engine  # one engine alive at a time: idle spinning threads would take the cores
    gc.collect()
    for label, pkg in (("exit-trained", args.exit_trained or args.package),
                       ("no exit loss", args.compare)):
        if not args.compare:
            break
        eng = edgeseq.load(pkg, threads=args.threads)
        # decoding only: rerank_source would add the same two passes to both
        plain = run(eng, sources, rerank_source=False)
        fast = run(eng, sources, draft="layers", rerank_source=False)
        acc = [eng.generate(s, max_new_tokens=MAX_NEW_TOKENS, draft="layers", rerank_source=False).stats.speculation
               for s in sources[:100]]
        drafted = sum(a["drafted"] for a in acc)
        spec_rows.append({"model": label, "package": pkg, "speedup": plain["seconds"] / fast["seconds"],
                          "acceptance": sum(a["accepted"] for a in acc) / max(1, drafted),
                          "identical": sum(a == b for a, b in zip(plain["outputs"], fast["outputs"])),
                          "inputs": len(sources)})
        del eng
        gc.collect()
    lines = [f"JFLEG dev ({len(sources)} sentences), {Path(args.package).name}, {args.threads} threads; "
             f"no-change GLEU {baseline:.4f}", "",
             "| configuration | GLEU | tokens/s | speedup vs full | decoder layers per token |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['config']} | {r['gleu']:.4f} | {r['tokens_per_s']:.0f} | {r['speedup']:.2f}x | "
              f"{r['layers_per_token']:.2f} |" for r in rows]
    if spec_rows:
        lines += ["", "| self-speculative (draft=layers) | speedup vs plain | acceptance | identical outputs |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {r['model']} ({Path(r['package']).name}) | {r['speedup']:.2f}x | {r['acceptance']:.2f} | "
                  f"{r['identical']}/{r['inputs']} |" for r in spec_rows]
    print("\n".join(lines))
    if args.out:
        write_json(args.out, "skip.json", {"package": args.package, "no_change_gleu": baseline,
                                           "rows": rows, "self_speculative": spec_rows})
        (args.out / "skip.md").write_text("\n".join(lines) + "\n")
        _plot(rows, baseline, args.out / "skip.png")
    return 0


def _plot(rows: list[dict], baseline: float, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in rows:
        ax.scatter(r["tokens_per_s"], r["gleu"])
        ax.annotate(r["config"], (r["tokens_per_s"], r["gleu"]), fontsize=7)
    ax.axhline(baseline, ls="--", c="gray", label="no change")
    ax.set_xlabel("tokens/s")
    ax.set_ylabel("GLEU (JFLEG dev)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
