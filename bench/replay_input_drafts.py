"""Replay input drafting against a package's own greedy outputs: how many verify passes
each sentence needs and where drafts from the source are rejected, without timing noise.

    python -m bench.replay_input_drafts PKG [--data jfleg] [--limit 754] [--max-draft 64]

Greedy output does not depend on the drafts, so one plain run gives every sentence's
output, and the drafter (runtime/drafters.py InputDrafter) is replayed against it: a
draft is accepted up to its first token that differs from the output, and the output's
token there is the verify pass's own. Drafts are as long as the source allows (up to
--max-draft; the runtime's planner sizes them from measured costs instead). Reported:
verify passes per sentence (1.0 would be a perfect drafter: the benchmark's oracle),
drafted and rejected tokens, and per situation (where a draft came from) how often its
first token was rejected. Beside them, the edit floor: the passes a drafter would need
that re-anchors perfectly after every edit but cannot guess a token the model writes
that is not the source's (one pass per such token, and one per deletion), from a
token-level alignment of each output with its source."""
from __future__ import annotations

import argparse
import difflib
from collections import Counter
from pathlib import Path

from bench.machine import write_json
from bench.speculative import load_inputs

SITUATIONS = {0: "first pass", 1: "going on", 2: "re-anchored by position",
              3: "re-anchored by 1-gram", 4: "re-anchored by 2-gram", 5: "re-anchored by 3-gram"}


def replay(engine, sources: list[list[int]], outputs: list[list[int]], max_draft: int) -> dict:
    from edgeseq.runtime.drafters import DraftContext, InputDrafter
    start = engine.manifest.special.decoder_start
    passes = drafted = rejected = 0
    tried, missed = Counter(), Counter()
    for source, output in zip(sources, outputs):
        drafter = InputDrafter(max_draft=max_draft, shapes=engine.codec.shapes)
        emitted: list[int] = []
        while len(emitted) < len(output):
            sequence = [[start] + emitted]
            situation = drafter.situation([source], sequence)
            room = len(output) - len(emitted) - 1  # the last token is always the pass's own
            draft = [t for t in drafter.propose(DraftContext([source], sequence, max_draft))
                     .tokens[0].tolist() if t >= 0][:room]
            wanted = output[len(emitted):]
            accepted = 0
            while accepted < len(draft) and draft[accepted] == wanted[accepted]:
                accepted += 1
            drafter.update(len(draft), accepted)
            passes += 1
            drafted += len(draft)
            rejected += len(draft) - accepted
            if draft:
                tried[situation] += 1
                missed[situation] += accepted == 0
            emitted += wanted[:accepted + 1]
    n = len(sources)
    return {"sentences": n, "passes_per_sentence": passes / n, "drafted_per_sentence": drafted / n,
            "rejected_per_sentence": rejected / n,
            "first_token_rejected": {SITUATIONS.get(s, str(s)): {"drafts": tried[s], "rejected": missed[s]}
                                     for s in sorted(tried, key=lambda s: (s is None, s or 0))}}


def edit_floor(sources: list[list[int]], outputs: list[list[int]], eos: int) -> dict:
    """Verify passes per sentence if every copied stretch were drafted whole and each edit
    cost one pass per token it writes (a deletion: one), and edits per sentence."""
    passes = edits = 0
    for source, output in zip(sources, outputs):
        copy = source[:-1] if source and source[-1] == eos else source
        written = output[:-1] if output and output[-1] == eos else output
        ops = difflib.SequenceMatcher(a=copy, b=written, autojunk=False).get_opcodes()
        changed = [(j1, j2) for tag, _, _, j1, j2 in ops if tag != "equal"]
        passes += 1 + sum(max(1, j2 - j1) for j1, j2 in changed)
        edits += len(changed)
    return {"passes_per_sentence": passes / len(sources), "edits_per_sentence": edits / len(sources)}


def main(argv: list[str] | None = None) -> int:
    import edgeseq
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--data", default="jfleg", choices=["jfleg", "news"])
    ap.add_argument("--limit", type=int, default=754)
    ap.add_argument("--max-draft", type=int, default=64)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    engine = edgeseq.load(args.package, threads=2)
    inputs = load_inputs(args.data, args.limit, engine.arch.vocab_size)
    sources = [engine.codec.encode(text) for text in inputs]
    outputs = [engine.generate(text, max_new_tokens=160, rerank_source=False, draft=None).token_ids for text in inputs]
    report = replay(engine, sources, outputs, args.max_draft)
    report["edit_floor"] = floor = edit_floor(sources, outputs, engine.manifest.special.eos)
    print(f"{report['sentences']} sentences: {report['passes_per_sentence']:.2f} verify passes each "
          f"(a perfect drafter: 1.00), {report['drafted_per_sentence']:.1f} tokens drafted, "
          f"{report['rejected_per_sentence']:.1f} of them rejected")
    print(f"edit floor: {floor['passes_per_sentence']:.2f} passes per sentence for "
          f"{floor['edits_per_sentence']:.2f} edits (perfect re-anchoring, no edited token "
          "guessed)\n")
    print("| draft from | drafts | first token rejected |")
    print("| --- | --- | --- |")
    for name, row in report["first_token_rejected"].items():
        print(f"| {name} | {row['drafts']} | {row['rejected'] / row['drafts']:.0%} |")
    if args.out:
        write_json(args.out, "replay_input_drafts.json", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
