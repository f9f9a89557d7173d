"""Teacher data for Whisper draft exits: synthetic speech (speech.py) through a Whisper
package; per generated token, the hidden state after each candidate exit layer and the
token the full model chose (greedy, the package's own rules). Written in shards of
`--shard` clips so a long run can be stopped and resumed.

    python -m models.whisper_exits.collect PKG --clips 1200 --out models/whisper_exits/.cache/base-int8
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SHARED_NEWS = Path(__file__).resolve().parents[3] / "shared" / "data" / "news" / "newstest2015-2019.en"


def teacher_rows(transcriber, samples: np.ndarray, exits: list[int]) -> dict[str, np.ndarray]:
    """For one utterance: {"targets": [T] int32, "h{k}": [T, d] float16 per exit k}."""
    from runtime.audio import iter_windows
    from runtime.decoder import LayerPlan
    from runtime.transcribe import TranscribeOptions
    runner, layers = transcriber.runner, transcriber.engine.arch.decoder_layers
    _, features = next(iter_windows(samples, transcriber.engine.arch.num_mel_bins))
    window = transcriber.decode_window(features, language="en")
    prompt = transcriber._prompt("en", TranscribeOptions())
    sequence = prompt + window.tokens + [transcriber.tokens.eot]
    if len(sequence) > transcriber.tokens.max_target_positions:
        return {}  # ran into the length limit (a repetition loop): no clean teacher
    ids = np.array([sequence[:-1]], np.int64)
    state = runner.encode_features(np.ascontiguousarray(features[None], np.float32))
    first = len(prompt) - 1  # the position whose output is the first generated token
    rows = {"targets": np.array(sequence[len(prompt):], np.int32)}
    for k in exits:
        cache = runner.new_cache(1, ids.shape[1])
        _, hidden = runner.step_hidden(ids, state, cache, LayerPlan.first(k, layers))
        rows[f"h{k}"] = hidden[0, first:].astype(np.float16)
    return rows


def main(argv: list[str] | None = None) -> int:
    import edgeseq
    from runtime.transcribe import Transcriber
    from .speech import read_sentences, utterances
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--text", type=Path, default=SHARED_NEWS, help="one sentence per line")
    ap.add_argument("--clips", type=int, default=1200)
    ap.add_argument("--per-clip", type=int, default=2, help="sentences per utterance")
    ap.add_argument("--shard", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    engine = edgeseq.load(a.package, threads=a.threads)
    transcriber = Transcriber(engine)
    exits = list(range(1, engine.arch.decoder_layers))
    a.out.mkdir(parents=True, exist_ok=True)
    sentences = read_sentences(a.text)
    shard: dict[str, list[np.ndarray]] = {}
    texts: list[str] = []
    for n, (text, samples) in enumerate(utterances(sentences, a.per_clip, a.seed)):
        if n >= a.clips:
            break
        path = a.out / f"shard-{n // a.shard:04d}.npz"
        if path.exists():
            continue  # resumed: this shard is done (the synthesis above is cheap)
        rows = teacher_rows(transcriber, samples, exits)
        for key, value in rows.items():
            shard.setdefault(key, []).append(value)
        texts.append(text if rows else "")
        if len(texts) == a.shard:
            np.savez(path, **{k: np.concatenate(v) for k, v in shard.items()},
                     lengths=np.array([len(t) for t in shard["targets"]]),
                     texts=np.array([t for t in texts if t]))
            print(f"{path.name}: {sum(len(t) for t in shard['targets'])} tokens", flush=True)
            shard, texts = {}, []
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
