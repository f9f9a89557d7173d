"""SpecMemo-style memory planning: predict the bytes a generation needs and pick the
largest draft length, batch size and maximum length that fit a budget. Speculation's
extra memory (draft buffers, the logits of k+1 positions) is given up first, then batch,
then length; below what plain decoding of one input needs, the plan refuses."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from functools import cache

from edgeseq.arch import ArchSpec
from edgeseq.errors import MemoryBudgetError, OptionsError
from edgeseq.manifest import Manifest, loaded_weight_bytes

F32 = 4
MB = 1 << 20
# Measured: RSS of a Python process after `import edgeseq.runtime` (numpy, onnxruntime,
# tokenizers) plus two onnxruntime sessions, before weights: 55-67 MB on x86-64 Linux;
# 77 MB once a first call has set up onnxruntime's arena and thread pool
# (bench/specmemo.py, 2 threads).
RUNTIME_ALLOWANCE = 80 * MB
# Allocators keep what they take: the peak resident growth of a generation measured
# 1.1-1.6x the bytes of the tensors predicted below (bench/specmemo.py, batch 8, the
# default model on JFLEG), from onnxruntime's arena chunks and freed numpy temporaries.
ALLOCATOR_OVERHEAD = 1.6
# Resident bytes per byte of initializers the two sessions load (a tied embedding counts
# twice: both graphs hold it). onnxruntime keeps the initializers plus prepacked copies
# for some kernels; fp16 weights are cast up to fp32 at load. Measured on t5-small-shaped
# packages after loading (bench/memory.py prints the measurement).
WEIGHT_RESIDENCY = {"fp32": 1.15, "fp16": 2.3, "int8": 1.35, "int4": 1.5}
# Resident bytes per byte of int8 encoder weights loaded as uint8 (x86 CPUs without VNNI,
# runtime/integer_gemm.py): onnxruntime keeps the copy it takes of them besides their
# packed form. t5-small int8 on an AMD EPYC: 21.0 MB of them, RSS after load +26 MB
# (bench/integer_gemm.py prints both setups' RSS).
UNSIGNED_WEIGHT_RESIDENCY = 1.3
# Resident bytes per byte of int8 decoder weights dequantized for fp32 products
# (runtime/decoder_products.py), net of the int8 weights no longer loaded: onnxruntime
# keeps its copy of each besides the packed form its GEMM reads. RSS after load, 2
# threads: the default model +10.8 MB for 6.45 MB of them, t5-small int8 +250 MB for
# 147 MB.
FP32_PRODUCT_RESIDENCY = 1.7


def held_logit_positions(source_length: int, draft: int) -> int:
    """Positions of logits a drafting call with rerank_source holds unscored per row
    (runtime/rerank.py PassScores): its scoring pass's (source and output, as long as the
    source) and one verify pass's."""
    return 2 * source_length + draft + 1


@dataclass(frozen=True)
class Request:
    batch: int = 1
    source_length: int = 128
    max_new_tokens: int = 64
    draft: int = 0           # verified draft tokens per pass (0: plain decoding)
    draft_model_bytes: int = 0   # a draft model's resident weights (its shape: estimate's draft_arch)
    rerank_source: bool = False  # a scoring pass over source and output after decoding
    even_rows: bool = False  # passes may run one row more (runtime/nbits_rows.py)

    def __post_init__(self) -> None:
        for name, least in (("batch", 1), ("source_length", 1), ("max_new_tokens", 1),
                            ("draft", 0), ("draft_model_bytes", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise OptionsError(f"{name} must be an int >= {least}, got {value!r}")


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    runtime: int
    encoder_activations: int
    cross_kv: int
    self_kv: int
    decoder_activations: int
    logits: int
    draft: int
    rerank: int = 0  # rerank_source: its scoring pass and held logits (runtime/rerank.py)

    @property
    def total(self) -> int:
        return sum(asdict(self).values())

    def to_json(self) -> dict:
        return {**asdict(self), "total": self.total}


def resident_weights(graph_weight_bytes: int, quant: str, unsigned_weight_bytes: int = 0,
                     fp32_product_bytes: int = 0) -> int:
    """`unsigned_weight_bytes`: int8 weights the encoder session was given as uint8;
    `fp32_product_bytes`: the decoder's weights it was given dequantized to fp32."""
    return int(graph_weight_bytes * WEIGHT_RESIDENCY.get(quant, 1.5)
               + unsigned_weight_bytes * UNSIGNED_WEIGHT_RESIDENCY
               + fp32_product_bytes * FP32_PRODUCT_RESIDENCY)


def cache_bytes(arch: ArchSpec) -> tuple[int, int]:
    """Bytes a model's caches take per row: per decoder position (the self-attention K/V
    of every layer, and the staging copy onnxruntime reads, runtime/kv_cache.py) and per
    source token (the cross-attention K/V of every layer)."""
    per_layer = 2 * arch.num_heads * arch.head_dim * F32  # a key and a value
    return 2 * arch.decoder_layers * per_layer, arch.decoder_layers * per_layer


@cache
def physical_memory_bytes() -> int | None:
    """This machine's RAM, where the OS says (None elsewhere); asked once per process
    (every generate call without a budget reads it)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_caches_fit(arch: ArchSpec, rows: int, source_length: int, max_new_tokens: int) -> None:
    """Without a budget a call's inputs decode together with their caches allocated up
    front: refuse one whose caches alone exceed this machine's memory, before trying (a
    few thousand rows x 8k tokens asked numpy for terabytes)."""
    total = physical_memory_bytes()
    per_position, per_source = cache_bytes(arch)
    need = rows * ((max_new_tokens + 1) * per_position + source_length * per_source)
    if total and need > total:
        raise MemoryBudgetError(
            f"this call's KV caches need {need / MB:.0f} MB ({rows} decoder rows x "
            f"{max_new_tokens} new tokens), more than this machine's {total / MB:.0f} MB: pass "
            f"fewer inputs or beams, fewer max_new_tokens, or memory_budget_mb to decode "
            f"the inputs in batches that fit")


def package_weight_bytes(manifest: Manifest, unsigned_weight_bytes: int = 0,
                         fp32_product_bytes: int = 0) -> int:
    """A package's resident weights (the target's, or a draft model's); see
    resident_weights for the load-time rewrites' bytes."""
    return resident_weights(loaded_weight_bytes(manifest), manifest.quant, unsigned_weight_bytes,
                            fp32_product_bytes)


def estimate(arch: ArchSpec, weight_bytes: int, r: Request,
             draft_arch: ArchSpec | None = None) -> MemoryEstimate:
    """Peak bytes of one generate call. Per row: encoder activations (the widest layer and
    the S x S attention scores), cross K/V for every decoder layer, the self-attention
    cache for the whole length, and per pass the activations and logits of k+1 positions.
    A draft model (shape `draft_arch`, weights r.draft_model_bytes) adds its own of all
    these: its sessions keep their own memory arenas, so none of it reuses the target's
    (JFLEG dev, a one-layer draft of the default model, batch 8: 4 MB over a plan that
    counted only its weights and caches)."""
    rows, s, steps = r.batch, r.source_length, r.max_new_tokens + 1 + r.draft
    width = max(arch.d_ff, 3 * arch.inner_dim)
    encoder = rows * s * (2 * width + 4 * arch.d_model) * F32 + \
        rows * arch.num_heads * s * s * F32 * 2
    per_position, per_source = cache_bytes(arch)
    cross = rows * s * per_source
    cache = rows * steps * per_position
    positions = r.draft + 1 + r.even_rows
    # attention concatenates past and new K/V of the layer it runs (one layer at a time)
    decoder = rows * positions * (2 * width + 4 * arch.d_model) * F32 + \
        rows * arch.num_heads * positions * (steps + s) * F32 * 2 + cache // max(1, 2 * arch.decoder_layers)
    logits = rows * positions * arch.vocab_size * F32 * 3  # raw, scored, probabilities
    draft = r.draft_model_bytes + rows * r.draft * arch.vocab_size * F32 * (1 if r.draft else 0)
    own = 0  # a draft model's own buffers: one call of it with passes of k+1 positions
    if r.draft and draft_arch is not None:
        theirs = estimate(draft_arch, 0, Request(rows, s, r.max_new_tokens, r.draft))
        own = theirs.total - theirs.runtime - theirs.draft
    rerank = 0
    if r.rerank_source:  # 2 rows per input, as long as the source (if it may be an output)
        scored = 2 * rows * min(s, r.max_new_tokens)
        rerank = max(0, scored * arch.vocab_size * F32 * 2 - logits) + cross * 2 + \
            2 * scored * arch.decoder_layers * 2 * arch.num_heads * arch.head_dim * F32
        if r.draft:  # a drafting call's own passes score both, their logits held meanwhile
            rerank += rows * held_logit_positions(s, r.draft) * arch.vocab_size * F32
    grow = lambda n: int(n * ALLOCATOR_OVERHEAD)  # noqa: E731
    return MemoryEstimate(weights=weight_bytes, runtime=RUNTIME_ALLOWANCE,
                          encoder_activations=grow(encoder), cross_kv=grow(cross),
                          self_kv=grow(cache), decoder_activations=grow(decoder),
                          logits=grow(logits),
                          draft=r.draft_model_bytes + grow(draft - r.draft_model_bytes) + own,
                          rerank=grow(rerank))


@dataclass(frozen=True)
class Plan:
    request: Request
    estimate: MemoryEstimate
    budget: int
    reduced: tuple[str, ...]  # what the planner gave up, in order

    def to_json(self) -> dict:
        return {"budget": self.budget, "request": asdict(self.request),
                "predicted": self.estimate.to_json(), "reduced": list(self.reduced)}


def plan(arch: ArchSpec, weight_bytes: int, budget_bytes: int, wanted: Request,
         draft_arch: ArchSpec | None = None) -> Plan:
    """The largest draft, then batch, then length (in that order of sacrifice) that fit;
    `draft_arch`: the draft model's shape, when drafting with one."""
    floor = estimate(arch, weight_bytes, Request(1, wanted.source_length, 1, 0,
                                                 rerank_source=wanted.rerank_source,
                                                 even_rows=wanted.even_rows))
    if floor.total > budget_bytes:
        raise MemoryBudgetError(
            f"a memory budget of {budget_bytes / MB:.3g} MB is below the "
            f"{floor.total / MB:.0f} MB that plain decoding of one {wanted.source_length}-token "
            f"input needs (weights {floor.weights / MB:.0f} MB, runtime "
            f"{floor.runtime / MB:.0f} MB); raise the budget or use a smaller / int4 package")
    request, reduced = wanted, []

    def fits(r: Request) -> bool:
        return estimate(arch, weight_bytes, r, draft_arch).total <= budget_bytes

    for field_name, minimum in (("draft", 0), ("batch", 1), ("max_new_tokens", 1)):
        if fits(request):
            break
        value = _largest_fitting(request, field_name, minimum, fits)
        reduced.append(f"{field_name} {getattr(request, field_name)} -> {value}")
        request = _replace(request, field_name, value)
        if field_name == "draft" and value == 0:
            request = _replace(request, "draft_model_bytes", 0)
    return Plan(request, estimate(arch, weight_bytes, request, draft_arch), budget_bytes,
                tuple(reduced))


def _replace(r: Request, name: str, value: int) -> Request:
    return Request(**{**asdict(r), name: value})


def _largest_fitting(r: Request, name: str, minimum: int, fits) -> int:
    lo, hi = minimum, getattr(r, name)
    while lo < hi:  # largest value in [minimum, current] that fits (or the minimum)
        mid = (lo + hi + 1) // 2
        if fits(_replace(r, name, mid)):
            lo = mid
        else:
            hi = mid - 1
    return lo
