"""The CUDA provider path, checked on a machine with an NVIDIA GPU and onnxruntime-gpu.

    python -m bench.cuda_check [--packages default,t5-small-int8,t5-small-fp32]
        [--data FILE] [--limit 100] [--rounds 3] [--out DIR]

Per package, in one run:
- placement: which execution provider ran each operator of the encoder and decoder
  (Engine.placement: onnxruntime's profiler), as counts per operator type;
- agreement with CPU: the largest difference of first-step logits over the largest
  logit, and how many greedy outputs are token-identical to the CPU's;
- exactness on CUDA: greedy speculative decoding (input and layer drafting) against
  plain greedy decoding on CUDA itself;
- speed: ms per input for plain greedy on CPU (`--threads`) and on CUDA, and input
  drafting on CUDA, interleaved over `--rounds` rounds (median), with ratios.

Packages: "default" (the embedded model), "t5-small-int8" / "t5-small-fp32" (random
t5-small-shaped weights exported here; needs torch and transformers), or a package
directory. Inputs: `--data` (one sentence per line; default: JFLEG dev from ../shared).
Without CUDAExecutionProvider it says so and exits 2."""
from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
JFLEG = REPO.parent / "shared" / "data" / "jfleg-dev" / "dev.src"


def logits_gap(cpu, gpu, texts: list[str]) -> float:
    """Largest |CPU - CUDA| first-step logit over the largest |logit|, across `texts`."""
    worst = 0.0
    for text in texts:
        outs = []
        for engine in (cpu, gpu):
            ids = np.array([engine.codec.encode(text)], np.int64)
            state = engine.runner.encode(ids, np.ones_like(ids))
            cache = engine.runner.new_cache(1, 4)
            start = np.array([[engine.manifest.special.decoder_start]], np.int64)
            outs.append(engine.runner.step(start, state, cache)[0, -1])
        worst = max(worst, float(np.abs(outs[0] - outs[1]).max() / np.abs(outs[0]).max()))
    return worst


def _timed(engine, inputs, options) -> tuple[float, list[list[int]]]:
    began = time.perf_counter()
    outs = [engine.generate(x, max_new_tokens=96, **{"draft": None, **options}).token_ids for x in inputs]
    return (time.perf_counter() - began) * 1e3 / len(inputs), outs


def check_package(name: str, inputs: list, threads: int, rounds: int) -> dict:
    import edgeseq
    path = resolve_package(name)
    cpu = edgeseq.load(path, provider="cpu", threads=threads)
    gpu = edgeseq.load(path, provider="cuda", threads=threads)
    row: dict = {"package": name, "providers": gpu.providers()}
    row["placement"] = gpu.placement()
    texts = [x for x in inputs if isinstance(x, str)][:20]
    if texts:
        row["first_step_logit_gap"] = logits_gap(cpu, gpu, texts)
    configs = {"cpu plain": (cpu, {}), "cuda plain": (gpu, {}),
               "cuda input drafting": (gpu, {"draft": "input"}),
               "cuda layer drafting": (gpu, {"draft": "layers"})}
    base = {"rerank_source": False}
    for engine, options in configs.values():  # warm-up (and the adaptive controllers learn)
        _timed(engine, inputs[:10], {**base, **options})
    times: dict[str, list[float]] = {c: [] for c in configs}
    outputs: dict[str, list] = {}
    for _ in range(rounds):
        for config, (engine, options) in configs.items():
            ms, outputs[config] = _timed(engine, inputs, {**base, **options})
            times[config].append(ms)
    ms = {c: statistics.median(t) for c, t in times.items()}
    plain = outputs["cuda plain"]
    row["inputs"] = len(inputs)
    row["ms_per_input"] = ms
    row["cuda_plain_vs_cpu_plain"] = ms["cpu plain"] / ms["cuda plain"]
    row["identical_to_cpu"] = sum(a == b for a, b in zip(plain, outputs["cpu plain"]))
    for config in ("cuda input drafting", "cuda layer drafting"):
        row[f"{config}: identical to cuda plain"] = sum(
            a == b for a, b in zip(outputs[config], plain))
        row[f"{config}: speedup vs cuda plain"] = ms["cuda plain"] / ms[config]
    return row


def resolve_package(name: str) -> str:
    if not name.startswith("t5-small-"):
        return name
    from edgeseq.export import export_checkpoint

    from bench.shapes import CACHE_DIR, ensure_checkpoint, get_shape
    quant = name.rsplit("-", 1)[1]
    out = CACHE_DIR / "cuda_check" / name
    if not (out / "manifest.json").exists():
        export_checkpoint(ensure_checkpoint(get_shape("t5-small")), out, quant=quant,
                          validate=False)
    return str(out)


def _inputs(package: str, data: Path | None, limit: int) -> list:
    if package.startswith("t5-small-"):  # no tokenizer: fixed random source ids
        rng = np.random.default_rng(0)
        return [rng.integers(3, 32000, size=int(n)).tolist()
                for n in rng.integers(8, 48, size=min(limit, 10))]
    path = data or JFLEG
    return [line for line in path.read_text().splitlines() if line.strip()][:limit]


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    from bench.machine import machine_info, write_json
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--packages", default="default,t5-small-int8,t5-small-fp32")
    ap.add_argument("--data", type=Path)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    if hasattr(ort, "preload_dlls"):  # CUDA and cuDNN from the nvidia-* wheels, if there
        try:
            ort.preload_dlls()
        except Exception as err:  # noqa: BLE001 (a report, not a failure)
            print(f"preload_dlls: {err}")
    available = ort.get_available_providers()
    print(f"onnxruntime {ort.__version__}: {', '.join(available)}", flush=True)
    if "CUDAExecutionProvider" not in available:
        print("CUDAExecutionProvider is not available here (install onnxruntime-gpu)")
        return 2
    result = {"machine": machine_info(a.threads, REPO), "providers_available": available,
              "rows": []}
    for package in a.packages.split(","):
        began = time.perf_counter()
        try:
            row = check_package(package, _inputs(package, a.data, a.limit), a.threads, a.rounds)
        except Exception as err:  # noqa: BLE001 (one package's failure is its row)
            row = {"package": package, "error": f"{type(err).__name__}: {err}",
                   "traceback": traceback.format_exc()}
        row["check_s"] = time.perf_counter() - began
        result["rows"].append(row)
        print(json.dumps(row, indent=1), flush=True)
        if a.out:
            write_json(a.out, "cuda_check.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
