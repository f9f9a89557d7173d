"""Where a call's time goes, and what a decoder pass costs, in one run.

    python -m bench.time_split PKG [--data jfleg|ids] [--limit 300] [--threads 2] [--cached 20]
        [--configs plain,input,plain+rerank,input+rerank] [--out DIR]
    (--configs "": part 2 alone)

Part 1 (text packages): per generate call, wall time split into the encoder and the
decoder passes (time inside onnxruntime's run) and everything else (Python: tokenizer,
rules, drafting, cache writes), per configuration, with the ratio to plain greedy.
Configurations run interleaved over 3 rounds (median).

Part 2 (any package, Whisper included): one decoder pass after 20 cached tokens (--cached), by the
number of new tokens (1 is a plain step; k+1 verifies k drafts) and by exit layer
(the first k layers, through the exit's own head when the package has one), as a
fraction of a full one-token pass; a verify pass that continues from a draft's exit
hidden states (the layers above the exit only) against one through every layer; and
what copying the cached K/V into a pass's
inputs costs (every layer for a full pass, only the layers that run for the others).
Whisper passes attend to random features (the cost does not depend on them)."""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

CONFIGS = {"plain": {"draft": None}, "input": {"draft": "input"},
           "plain+rerank": {"draft": None, "rerank_source": True},
           "input+rerank": {"draft": "input", "rerank_source": True}}


class _Timed:
    """Wraps a session's run() and adds up the seconds spent inside it."""

    def __init__(self, session):
        self.session, self.seconds = session, 0.0

    def run(self, *args, **kwargs):
        began = time.perf_counter()
        try:
            return self.session.run(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - began

    def __getattr__(self, name):
        return getattr(self.session, name)


def split_calls(engine, inputs: list, configs: list[str], rounds: int = 3) -> list[dict]:
    runner = engine.runner
    encoder, decoder = _Timed(runner.encoder), _Timed(runner.decoder)
    runner.encoder, runner.decoder = encoder, decoder
    samples: dict[str, list[tuple[float, float, float]]] = {c: [] for c in configs}
    for name in configs:  # warm-up
        for item in inputs[:10]:
            engine.generate(item, max_new_tokens=160, **{"rerank_source": False, **CONFIGS[name]})
    for _ in range(rounds):
        for name in configs:
            encoder.seconds = decoder.seconds = 0.0
            began = time.perf_counter()
            for item in inputs:
                engine.generate(item, max_new_tokens=160, **{"rerank_source": False, **CONFIGS[name]})
            total = time.perf_counter() - began
            samples[name].append((total, encoder.seconds, decoder.seconds))
    runner.encoder, runner.decoder = encoder.session, decoder.session
    rows = []
    for name in configs:
        total, enc, dec = (statistics.median(s[i] for s in samples[name]) * 1e3 / len(inputs)
                           for i in range(3))
        rows.append({"config": name, "ms_per_call": total, "encoder_ms": enc, "decoder_ms": dec,
                     "other_ms": total - enc - dec})
    base = rows[0]["ms_per_call"]
    for r in rows:
        r["speedup_vs_first"] = base / r["ms_per_call"]
    return rows


def pass_costs(engine, repeats: int = 30, cached: int = 20) -> dict:
    from edgeseq.runtime.decoder import LayerPlan
    runner, arch = engine.runner, engine.arch
    rng = np.random.default_rng(0)
    if arch.num_mel_bins:
        state = runner.encode_features(rng.standard_normal((1, arch.num_mel_bins, 3000)).astype(np.float32))
    else:
        source = rng.integers(5, arch.vocab_size, (1, 32))
        state = runner.encode(source, np.ones_like(source))
    tokens = rng.integers(5, min(arch.vocab_size, 30000), (1, cached + 20))

    def timed(new: int, plan=None, from_hidden: bool = False) -> float:
        hidden = np.zeros((1, new, arch.d_model), np.float32) if from_hidden else None

        def once() -> float:  # a fresh cache holding `cached` tokens, then the timed pass
            cache = runner.new_cache(1, cached + 20)
            runner.step(tokens[:, :cached], state, cache)
            return _seconds(lambda: runner.step_hidden(tokens[:, cached:cached + new], state,
                                                       cache, plan, hidden))
        return _median_ms(once, repeats)

    timed(1)  # warm-up
    full = timed(1)
    layers = arch.decoder_layers
    return {"cached_tokens": cached, "one_token_ms": full,
            "by_new_tokens": {n: timed(n) / full for n in (1, 2, 5, 13)},
            "by_exit": {k: timed(1, LayerPlan.first(k, layers)) / full for k in range(1, layers)},
            # LayerSkip-style reuse: a verify pass over REUSE_POSITIONS positions continuing
            # from exit k's hidden states (layers k.. only) against one through every layer
            "verify_upper_layers": {k: timed(REUSE_POSITIONS, LayerPlan.span(k, layers, layers, False),
                                             from_hidden=True) / full for k in range(1, layers)},
            "verify_all_layers": timed(REUSE_POSITIONS) / full,
            "staging_copy_ms": staging_copy_ms(runner, cached, repeats)}


REUSE_POSITIONS = 5


def staging_copy_ms(runner, cached: int, repeats: int) -> dict:
    """A pass's copy of the cached K/V into contiguous inputs (KVCache.past_contiguous)
    at `cached` tokens: of every layer (a full pass) and of the first k (a pass through
    the first k layers; the skipped layers' caches are not copied)."""
    cache = runner.new_cache(1, cached)
    cache.length = cached
    layers = runner.arch.decoder_layers

    def timed(which) -> float:
        return _median_ms(lambda: _seconds(lambda: cache.past_contiguous(which)), repeats * 10)
    return {"all": timed(None), "first": {k: timed(tuple(range(k))) for k in range(1, layers)}}


def _seconds(run) -> float:
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def _median_ms(once, repeats: int) -> float:
    """The median of `repeats` calls of once() (each returns the seconds it timed), in ms."""
    return statistics.median(once() for _ in range(repeats)) * 1e3


def main(argv: list[str] | None = None) -> int:
    import edgeseq
    from bench.machine import machine_info, write_json
    from bench.speculative import load_inputs
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--data", default="jfleg", choices=["jfleg", "ids"])
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", default="plain,input,plain+rerank,input+rerank")
    ap.add_argument("--cached", type=int, default=20,
                    help="tokens in the cache before the timed pass (part 2)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    engine = edgeseq.load(a.package, threads=a.threads)
    result = {"package": a.package, "machine": machine_info(a.threads, Path(__file__).resolve().parents[1])}
    configs = [c for c in a.configs.split(",") if c]  # none (--configs ""): part 2 alone
    if configs and not engine.arch.num_mel_bins:
        unknown = set(configs) - set(CONFIGS)
        if unknown:
            raise SystemExit(f"unknown configurations {sorted(unknown)}; known: {list(CONFIGS)}")
        inputs = load_inputs(a.data, a.limit, engine.arch.vocab_size)
        result["calls"] = split_calls(engine, inputs, configs)
        print(f"{len(inputs)} inputs ({a.data}), {a.threads} threads, median of 3 rounds\n")
        print("| configuration | ms per call | encoder | decoder passes | other (Python) | speedup vs first |")
        print("| --- | --- | --- | --- | --- | --- |")
        for r in result["calls"]:
            print(f"| {r['config']} | {r['ms_per_call']:.2f} | {r['encoder_ms']:.2f} | {r['decoder_ms']:.2f} "
                  f"| {r['other_ms']:.2f} | {r['speedup_vs_first']:.2f}x |")
    costs = result["passes"] = pass_costs(engine, cached=a.cached)
    print(f"\ndecoder pass after {a.cached} cached tokens: one token {costs['one_token_ms']:.3f} ms")
    print("| new tokens | " + " | ".join(map(str, costs["by_new_tokens"])) + " |")
    print("| --- |" + " --- |" * len(costs["by_new_tokens"]))
    print("| x one-token pass | " + " | ".join(f"{v:.2f}" for v in costs["by_new_tokens"].values()) + " |")
    print("\n| first k layers | " + " | ".join(map(str, costs["by_exit"])) + " |")
    print("| --- |" + " --- |" * len(costs["by_exit"]))
    print("| x full pass | " + " | ".join(f"{v:.2f}" for v in costs["by_exit"].values()) + " |")
    upper, every = costs["verify_upper_layers"], costs["verify_all_layers"]
    print(f"\na verify pass over {REUSE_POSITIONS} positions through every layer: {every:.2f} x a "
          "full one-token pass; continuing from exit k's hidden states (LayerSkip's reuse; the "
          "last position's lower layers then need one more draft step):")
    print("| exit k | " + " | ".join(map(str, upper)) + " |")
    print("| --- |" + " --- |" * len(upper))
    print("| upper layers only | " + " | ".join(f"{v:.2f}" for v in upper.values()) + " |")
    print("| saved per round, net of the extra draft step | "
          + " | ".join(f"{every - v - costs['by_exit'][k]:+.2f}" for k, v in upper.items()) + " |")
    copy = costs["staging_copy_ms"]
    print(f"\ncopying the cached K/V for a pass: every layer {copy['all']:.3f} ms; the first k "
          "layers: " + ", ".join(f"{k}: {ms:.3f}" for k, ms in copy["first"].items()))
    if a.out:
        write_json(a.out, "time_split.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
