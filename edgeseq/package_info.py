"""`edgeseq info`: what a package holds and how it runs on this machine (providers, the
in-memory rewrites its load chose, what greedy speculation guarantees here)."""
from __future__ import annotations

import json


def print_info(engine, as_json: bool = False, placement: bool = False) -> int:
    """`edgeseq info`: the package, and the choices this load made on this machine."""
    m = engine.manifest
    info = {"package": str(engine.directory), "family": m.arch.family.value, "quant": m.quant,
            "tokenizer": m.has_tokenizer, "arch": m.arch.to_json(),
            "special_tokens": vars(m.special), "exits": m.exits,
            "size_bytes": sum(f["bytes"] for f in m.files.values()),
            "providers": engine.providers(), "validation": m.validation,
            "generation": m.generation, "encoder_int8_weights": _int8_weights(engine),
            "decoder_products": _decoder_products(engine),
            "row_invariant_decoder": m.row_invariant_decoder}
    if placement:
        info["placement"] = engine.placement()
    if as_json:
        print(json.dumps(info, indent=1))
        return 0
    a = m.arch
    print(f"{info['package']}: {a.family.value}, {m.quant}, {info['size_bytes'] / 1e6:.2f} MB")
    print(f"  layers {a.encoder_layers} encoder + {a.decoder_layers} decoder, d_model {a.d_model}, "
          f"{a.num_heads} heads x {a.head_dim}, vocab {a.vocab_size}")
    print(f"  tokenizer: {'yes' if m.has_tokenizer else 'no (ids-only package)'}")
    print(f"  exits: {m.exits}")
    defaults = {k: v for k, v in m.generation.items() if v not in (None, [], 0, False)}
    if defaults:  # what generate does unless told otherwise
        print("  decoding defaults: " + ", ".join(f"{k} {v}" for k, v in defaults.items()))
    for graph, providers in info["providers"].items():
        print(f"  {graph} runs on: {', '.join(providers)}")
    print("  greedy speculation: " + _exactness(engine))
    if info["encoder_int8_weights"] == "unsigned":
        print("  encoder int8 weights: loaded as uint8 (this CPU has no VNNI, where the "
              "stored uint8 x int8 product saturates)")
    elif info["encoder_int8_weights"] == "stored":
        print("  encoder int8 weights: as stored")
    if info["decoder_products"] == "fp32":
        from edgeseq.runtime.memory import MB  # the unit of memory budgets
        print(f"  decoder int8 weights: multiplied in fp32 "
              f"({engine.runner.sessions.fp32_product_bytes / MB:.1f} MB dequantized at load)")
    elif m.quant == "int8":
        print("  decoder int8 weights: multiplied in int8, as stored")
    if placement:
        from edgeseq.runtime.placement import summary
        for graph, ops in info["placement"].items():
            print("  operators, " + summary(graph, ops))
    return 0


def _exactness(engine) -> str:
    """What greedy speculation guarantees for this package on this CPU
    (export/row_invariant.py, runtime/nbits_rows.py)."""
    m, sessions = engine.manifest, engine.runner.sessions
    if sessions.even_rows:
        why = ("this CPU's products compute rows alike only in pairs" if m.row_invariant_decoder
               else "no attention query is a lone row")
        return f"plain greedy's tokens, bitwise (every pass runs an even number of rows: {why})"
    asked = "load with even_decoder_rows=True, CLI --even-rows on"
    if m.row_invariant_decoder:
        if _even_rows_would_help(engine):
            return ("plain greedy's tokens but at rare near-ties (this CPU's products compute a "
                    f"lone row differently: {asked})")
        return "plain greedy's tokens, bitwise (every row of a verify pass is the one-token pass)"
    from edgeseq.manifest import ROW_INVARIANT_QUANTS
    how = ("exported without row-invariant attention: `edgeseq upgrade PKG` adds it"
           if m.quant in ROW_INVARIANT_QUANTS else f"{m.quant} one-token passes round differently")
    if _even_rows_would_help(engine):
        how += f"; or {asked}"
    return f"plain greedy's tokens but at rare near-ties ({how})"


def _even_rows_would_help(engine) -> bool:
    """Whether passes of an even number of rows would make this decoder's rows exact where
    they are not (runtime/nbits_rows.py; the load's answer, asked once)."""
    sessions = engine.runner.sessions
    if engine.config.provider != "cpu" or sessions.rows is None:
        return False
    return sessions.rows.even_rows_make_exact(engine.manifest.row_invariant_decoder,
                                              bool(sessions.fp32_products))


def _int8_weights(engine) -> str | None:
    """How the encoder's integer GEMM got its int8 weights: "stored" or "unsigned"
    (runtime/integer_gemm.py); None without an integer GEMM."""
    sessions = engine.runner.sessions
    if not sessions.integer_gemm:
        return None
    return "unsigned" if sessions.unsigned_weights else "stored"


def _decoder_products(engine) -> str:
    """How the decoder multiplies: "fp32" where its int8 weights were dequantized at load
    (runtime/decoder_products.py), else as the package stores them."""
    return "fp32" if engine.runner.sessions.fp32_products else "stored"
