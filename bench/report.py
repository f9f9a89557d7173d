"""Tables, ratios and the plot for bench/decode.py; pure formatting, no engines."""

from __future__ import annotations

from pathlib import Path

from bench.peers import EngineResult, Stat

REFERENCE = "transformers"
NOISY_CORES = 0.5  # other processes' CPU use above which a timing is flagged


def mark_reference_match(results: list[EngineResult]) -> None:
    """Set ``same_prefix``: how many leading tokens agree with transformers' greedy output."""
    refs = {r.shape: r.token_ids for r in results if r.engine == REFERENCE and r.status == "ok"}
    for r in results:
        ref = refs.get(r.shape)
        if r.status != "ok" or ref is None:
            continue
        n = 0
        for a, b in zip(ref, r.token_ids):
            if a != b:
                break
            n += 1
        r.same_prefix = n


def ratios(results: list[EngineResult]) -> list[dict]:
    """edgeseq against each peer on the same shape; > 1 means edgeseq is better, except
    for memory and disk, which are plain edgeseq / peer."""
    out = []
    ok = [r for r in results if r.status == "ok"]
    for mine in (r for r in ok if r.engine.startswith("edgeseq")):
        for peer in (r for r in ok if r.shape == mine.shape and not r.engine.startswith("edgeseq")):
            out.append({
                "shape": mine.shape, "edgeseq": mine.label, "peer": peer.label,
                "decode_tokens_per_s": _div(mine.decode_tokens_per_s.median,
                                            peer.decode_tokens_per_s.median),
                "first_token_speedup": _div(peer.first_token_ms.median, mine.first_token_ms.median),
                "peak_rss": _div(mine.peak_rss_mb, peer.peak_rss_mb),
                "size_on_disk": _div(mine.size_mb, peer.size_mb),
                "others_cpu_cores": max(mine.others_cpu_cores or 0.0, peer.others_cpu_cores or 0.0),
            })
    return out


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(stat: Stat | None, digits: int = 1) -> str:
    if stat is None:
        return "—"
    return f"{stat.median:.{digits}f} ({stat.min:.{digits}f}–{stat.max:.{digits}f})"


def _num(x: float | None, digits: int = 0) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def markdown(results: list[EngineResult], machine: dict, settings: dict,
             ratio_rows: list[dict]) -> str:
    lines = [
        "## Decode benchmark",
        "",
        f"{machine['cpu_model']} ({', '.join(machine['cpu_flags'])}), "
        f"{machine['usable_cores']} usable cores, {machine['memory_gib']} GiB, "
        f"load {machine['load_average_at_start']}; onnxruntime {machine['onnxruntime']}; "
        f"{settings['threads']} threads; batch 1, greedy; {settings['input_tokens']} input tokens, "
        f"{settings['new_tokens']} forced new tokens; {settings['warmup']} warm-up, "
        f"{settings['repeats']} repeats: median (min–max). Random weights.",
        "",
        "First token = wall time of a generate call for 1 new token (encoder + 1 decoder step). "
        "Decode tokens/s = (n-1) / (median t_n - median t_1). Load excludes importing the "
        "engine's packages (import s). Peak RSS of the engine's own process, imports "
        "included. Same = leading greedy tokens equal to transformers'. Others' CPU = cores "
        "that other processes kept busy while timing (shared-machine noise).",
    ]
    for shape in dict.fromkeys(r.shape for r in results):
        lines += ["", f"### {shape}", "",
                  "| engine | status | import s | load s | first token ms | decode tokens/s "
                  "| peak RSS MB | on disk MB | same | others' CPU |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in (r for r in results if r.shape == shape):
            status = r.status if r.status == "ok" else f"{r.status}: {r.reason}"
            lines.append(
                f"| {r.label} | {status.replace('|', '/')} | {_num(r.import_s, 2)} "
                f"| {_num(r.load_s, 2)} "
                f"| {_fmt(r.first_token_ms)} | {_fmt(r.decode_tokens_per_s)} "
                f"| {_num(r.peak_rss_mb)} | {_num(r.size_mb, 1)} "
                f"| {'—' if r.same_prefix is None else f'{r.same_prefix}/{r.new_tokens}'} "
                f"| {_num(r.others_cpu_cores, 2)} |")
        notes = [_disk_note(r) for r in results if r.shape == shape]
        lines += [n for n in notes if n]
    lines += ["", "### edgeseq vs peers", ""]
    if not ratio_rows:
        lines.append("No ratios: edgeseq did not run (see its status above).")
    for row in ratio_rows:
        lines.append(
            f"- {row['shape']}: {row['edgeseq']} / {row['peer']} decode tokens/s = "
            f"{_num(row['decode_tokens_per_s'], 2)}x; "
            f"first token {_num(row['first_token_speedup'], 2)}x "
            f"as fast; peak RSS {_num(row['peak_rss'], 2)}x; on disk {_num(row['size_on_disk'], 2)}x"
            + (f" (noisy: others used {row['others_cpu_cores']:.2f} cores)"
               if row["others_cpu_cores"] > NOISY_CORES else ""))
    return "\n".join(lines)


def _disk_note(r: EngineResult) -> str | None:
    files = r.extra.get("onnx_files_mb") if r.status == "ok" else None
    if not files:
        return None
    listing = ", ".join(f"{name} {mb:.0f} MB" for name, mb in files.items())
    return (f"\n{r.label} on disk: {listing} (the decoder weights are written "
            f"{r.extra.get('decoder_copies')} times; both decoder sessions are loaded).")


def plot(results: list[EngineResult], path: Path) -> bool:
    """Bar chart of decode tokens/s per engine and shape; False when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ok = [r for r in results if r.status == "ok"]
    shapes = list(dict.fromkeys(r.shape for r in ok))
    labels = list(dict.fromkeys(r.label for r in ok))
    if not ok:
        return False
    fig, ax = plt.subplots(figsize=(1.6 * len(labels) + 2, 4))
    width = 0.8 / max(len(shapes), 1)
    for i, shape in enumerate(shapes):
        by_label = {r.label: r.decode_tokens_per_s.median for r in ok if r.shape == shape}
        xs = [j + i * width for j in range(len(labels))]
        ax.bar(xs, [by_label.get(lab, 0) for lab in labels], width, label=shape)
    ax.set_xticks([j + width * (len(shapes) - 1) / 2 for j in range(len(labels))])
    ax.set_xticklabels(labels, rotation=20, ha="right")
    ax.set_ylabel("decode tokens/s (median)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
