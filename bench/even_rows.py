"""What even-row decoder passes cost and what they buy, on CPUs whose MatMulNBits kernels
compute rows alike only in pairs (runtime/nbits_rows.py): a package loaded as the runtime
loads it there (every pass an even number of rows) against the same package with its
passes as they come, plain greedy and a drafter on each, alternating, median of rounds;
and, each way, how many drafted outputs are plain greedy's.

    python -m bench.even_rows PKG [--data ids|jfleg] [--limit 40] [--drafters layers,ngram]
        [--rounds 3] [--threads 2] [--max-new-tokens 64] [--out DIR]

Int8 products as stored (`fp32_decoder_products=False`), `even_decoder_rows` True against
False. On a CPU whose products compute rows alike alone, both ways run the same passes and
the script says so."""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.timing import alternating_decodes


def run(package: str, inputs: list, drafters: list[str], rounds: int, threads: int,
        max_new_tokens: int) -> dict:
    import edgeseq
    engines = {way: edgeseq.load(package, threads=threads, fp32_decoder_products=False,
                                 even_decoder_rows=even)
               for way, even in (("even", True), ("as-they-come", False))}
    paired = engines["even"].runner.sessions.even_rows
    configs = {"plain": None, **{d: d for d in drafters}}

    times, outputs = alternating_decodes(engines, configs, inputs, rounds, max_new_tokens,
                                         warmup=5)
    seconds = {way: statistics.median(t) for way, t in times.items()}
    same = lambda a, b: sum(x == y for x, y in zip(outputs[a], outputs[b]))
    return {"inputs": len(inputs), "rounds": rounds, "even_rows_chosen": paired,
            "seconds": seconds, "rounds_s": times,
            "even_over_as_they_come_time": {c: seconds[f"even/{c}"] / seconds[f"as-they-come/{c}"]
                                            for c in configs},
            "speedup": {f"{way}/{c}": seconds[f"{way}/plain"] / seconds[f"{way}/{c}"]
                        for way in engines for c in drafters},
            "identical_to_plain": {f"{way}/{c}": same(f"{way}/{c}", f"{way}/plain")
                                   for way in engines for c in drafters}}


def main(argv: list[str] | None = None) -> int:
    from bench.machine import machine_info, write_json
    from bench.speculative import load_inputs
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--data", default="ids", choices=["jfleg", "ids"])
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--drafters", default="layers,ngram")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    import edgeseq
    vocab = edgeseq.load(a.package, threads=1).arch.vocab_size
    r = run(a.package, load_inputs(a.data, a.limit, vocab), a.drafters.split(","), a.rounds,
            a.threads, a.max_new_tokens)
    print(f"{r['inputs']} inputs ({a.data}), {a.threads} threads, median of {a.rounds} rounds; "
          f"even rows chosen on this CPU: {'yes' if r['even_rows_chosen'] else 'no'}\n")
    print("| passes | configuration | s | speedup vs its plain | identical to its plain |")
    print("| --- | --- | --- | --- | --- |")
    for key, s in r["seconds"].items():
        way, config = key.split("/")
        speed = r["speedup"].get(key)
        print(f"| {way} | {config} | {s:.2f} | {'-' if speed is None else f'{speed:.2f}x'} "
              f"| {r['identical_to_plain'].get(key, '-')}{'' if config == 'plain' else '/' + str(r['inputs'])} |")
    ratio = r["even_over_as_they_come_time"]
    print("\neven rows / as they come, time: " + ", ".join(f"{c} {v:.3f}x" for c, v in ratio.items()))
    if a.out:
        write_json(a.out, "even_rows.json", {"package": a.package, **r, "machine": machine_info(a.threads)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
