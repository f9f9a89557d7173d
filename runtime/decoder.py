"""Run a package's encoder and decoder graphs. `step` takes any number of new tokens,
any subset of layers, and writes their K/V into the preallocated cache at its cursor."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from edgeseq import names
from edgeseq.arch import Positions
from edgeseq.errors import ProviderFailure
from edgeseq.manifest import Manifest
from .decoder_products import fp32_product_graph, recommends_drafter, wanted_products
from .integer_gemm import (cpu_kernels_on_gpu, unsigned_buffer_bytes, unsigned_weight_graph,
                           uses_integer_gemm, wants_unsigned_weights, x86_cpu_flags)
from .kv_cache import KVCache
from .memory import package_weight_bytes
from .nbits_rows import DecoderRows, wants_even_rows
from .providers import SessionConfig, encoder_thread_count, make_session, resolve_provider


@dataclass(frozen=True)
class LayerPlan:
    """Which decoder layers run for a step; skipped layers with `fill` get K/V projected
    from the hidden state that reaches them (state propagation), others get zeros."""
    run: tuple[bool, ...]
    fill: tuple[bool, ...]

    @classmethod
    def all_layers(cls, layers: int) -> "LayerPlan":
        return cls((True,) * layers, (False,) * layers)

    @classmethod
    def first(cls, exit_layer: int, layers: int, fill: bool = False) -> "LayerPlan":
        """Run layers 0 .. exit_layer - 1 (LayerSkip-style early exit)."""
        run = tuple(i < exit_layer for i in range(layers))
        return cls(run, tuple(fill and not r for r in run))

    @classmethod
    def span(cls, begin: int, end: int, layers: int, fill_after: bool) -> "LayerPlan":
        """Run layers begin .. end - 1 (continuing from layer `begin`'s input hidden
        state); with fill_after, project K/V for the layers after `end` (CALM)."""
        run = tuple(begin <= i < end for i in range(layers))
        return cls(run, tuple(fill_after and i >= end for i in range(layers)))

    @classmethod
    def keep(cls, kept: "set[int] | list[int]", layers: int) -> "LayerPlan":
        """Run only the layers in `kept` (unified layer skipping)."""
        return cls(tuple(i in kept for i in range(layers)), (False,) * layers)

    # asked on every decoder pass: computed once per plan (a frozen value)
    @cached_property
    def executed(self) -> int:
        return sum(self.run)

    @cached_property
    def feeds(self) -> tuple[np.ndarray, np.ndarray]:
        """The decoder's layer_run and layer_fill inputs."""
        return np.array(self.run, bool), np.array(self.fill, bool)

    @cached_property
    def reads_past(self) -> tuple[int, ...] | None:
        """Layers whose cached K/V the pass reads (those that run); None for all. A
        skipped layer, filled or not, never reads its past."""
        ran = tuple(i for i, r in enumerate(self.run) if r)
        return None if len(ran) == len(self.run) else ran

    @cached_property
    def written(self) -> tuple[int, ...]:
        """Layers whose K/V a pass writes into the cache (run or filled)."""
        return tuple(i for i, (r, f) in enumerate(zip(self.run, self.fill)) if r or f)


@dataclass
class EncoderState:
    cross: list[np.ndarray]  # per decoder layer: keys, values [B, H, S, head_dim]
    bias: np.ndarray         # [B, 1, 1, S] additive padding bias
    feeds: dict | None = None  # the decoder's inputs, built on the first pass, updated per pass

    @property
    def batch(self) -> int:
        return self.bias.shape[0]

    def select(self, rows: np.ndarray) -> "EncoderState":
        """The state of rows `rows` (e.g. each input repeated once per beam)."""
        return EncoderState([np.ascontiguousarray(c[rows]) for c in self.cross],
                            np.ascontiguousarray(self.bias[rows]))


def device_memory(session: ort.InferenceSession) -> str | None:
    """The device whose memory the session's first provider computes in ("cuda"), or None
    for host memory. Inputs every pass reads are put there once: fed from numpy, the
    cross-attention K/V went to the GPU on every pass (Whisper base on an H100: 37 MB a
    pass, 7.3 ms per decoder pass; bench/cuda_check.py)."""
    return "cuda" if session.get_providers()[0] in CUDA_MEMORY_PROVIDERS else None


CUDA_MEMORY_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def run_session(session, outputs: list[str], feeds: dict) -> list:
    """session.run without its per-call Python checks (every input named, OrtValue
    ownership, graph capture) and its provider fallback (which would print and go on
    on the CPU): ~25 us of a 0.3 ms decoder pass of the default model in a loop of runs
    (JFLEG dev, alternating runs: plain greedy 3% faster, input drafting 1%), and the
    feeds here are this module's own, always complete. Anything but an InferenceSession
    (a wrapper that times runs, say), or an onnxruntime without the inner session, is
    run through run(). A provider's failure is a ProviderFailure that says what to do."""
    core = getattr(session, "_sess", None) if type(session) is ort.InferenceSession else None
    if core is None:
        return session.run(outputs, feeds)
    try:
        return core.run(outputs, feeds, None)
    except ort_state.EPFail as err:
        raise ProviderFailure(f"{session.get_providers()[0]} failed during a pass: {err}; "
                              "load the package with provider='cpu' to decode on the CPU") from err


@dataclass
class Sessions:
    """A package's encoder and decoder sessions, and what each was loaded with when its
    graph was rewritten in memory for this CPU (runtime/integer_gemm.py,
    runtime/decoder_products.py)."""
    encoder: ort.InferenceSession
    decoder: ort.InferenceSession
    integer_gemm: bool  # the encoder multiplies in onnxruntime's integer GEMM
    unsigned_weights: tuple[str, ...] = ()  # its int8 weights loaded as uint8
    unsigned_weight_bytes: int = 0
    # the decoder's int8 weights multiplied as fp32 (runtime/decoder_products.py)
    fp32_products: tuple[str, ...] = ()
    fp32_product_bytes: int = 0
    # every decoder pass runs an even number of rows: this CPU's products compute rows
    # exactly alike only in pairs, or the attention is unpadded (runtime/nbits_rows.py)
    even_rows: bool = False
    # how this CPU computes the decoder's rows, asked of onnxruntime at most once (for the
    # load's choices and for what `edgeseq info` says)
    rows: DecoderRows | None = None


def open_sessions(directory: Path, config: SessionConfig, manifest: Manifest,
                  profile: Path | None = None) -> Sessions:
    """A package's sessions as the runner runs them; `profile`: a folder for onnxruntime's
    traces (runtime/placement.py)."""
    encoder_file = directory / names.ENCODER_FILE
    encoder_bytes = encoder_file.read_bytes()  # the graph alone: its weights are external
    integer_gemm = uses_integer_gemm(encoder_bytes)
    cpu_flags = x86_cpu_flags()
    graph = (unsigned_weight_graph(encoder_file, encoder_bytes)
             if wants_unsigned_weights(config.unsigned_int8_weights, integer_gemm, cpu_flags)
             else None)
    # The encoder runs once per request: spinning after it, its idle workers would take
    # the cores of the decoder steps that follow (bench/thread_pools.py).
    providers = resolve_provider(config.provider)
    encoder = make_session(encoder_file, config, spin=False,
                           threads=encoder_thread_count(config, manifest.arch.d_model),
                           profile=profile and profile / "encoder", graph=graph,
                           providers=providers)
    decoder_file = directory / names.DECODER_FILE
    decoder_bytes = decoder_file.read_bytes()
    rows = DecoderRows(decoder_bytes)  # asked of onnxruntime once, if either choice needs it
    scan = wanted_products(decoder_bytes, manifest, config, cpu_flags, rows)
    products = (fp32_product_graph(decoder_file, decoder_bytes, scan) if scan is not None
                else None)
    decoder = make_session(decoder_file, config, profile=profile and profile / "decoder",
                           graph=products, providers=providers)
    sessions = Sessions(encoder, decoder, integer_gemm, rows=rows)
    if graph is not None:
        sessions.unsigned_weights, sessions.unsigned_weight_bytes = graph.weights, graph.buffer_bytes
    if products is not None:
        sessions.fp32_products, sessions.fp32_product_bytes = products.weights, products.buffer_bytes
    sessions.even_rows = wants_even_rows(
        config.even_decoder_rows, config.provider, recommends_drafter(manifest),
        lambda: rows.even_rows_make_exact(manifest.row_invariant_decoder, products is not None))
    return sessions


def planned_weight_bytes(directory: Path, manifest: Manifest, config: SessionConfig) -> int:
    """What the memory model counts for a package's weights once loaded under `config` on
    this CPU (Engine.resident_weight_bytes), without loading it: a draft model in
    `edgeseq plan`. Its graphs are parsed, not run."""
    cpu_flags = x86_cpu_flags()
    encoder = (directory / names.ENCODER_FILE).read_bytes()
    widened = wants_unsigned_weights(config.unsigned_int8_weights, uses_integer_gemm(encoder),
                                     cpu_flags)
    scan = wanted_products((directory / names.DECODER_FILE).read_bytes(), manifest, config,
                           cpu_flags)
    fp32 = scan.fp32_bytes if scan is not None else 0
    return package_weight_bytes(manifest, unsigned_buffer_bytes(encoder) if widened else 0, fp32)


class Seq2SeqRunner:
    def __init__(self, directory: Path, manifest: Manifest, config: SessionConfig):
        self.manifest = manifest
        self.arch = manifest.arch
        self.sessions = open_sessions(directory, config, manifest)
        self.encoder, self.decoder = self.sessions.encoder, self.sessions.decoder
        warning = cpu_kernels_on_gpu(device_memory(self.encoder), self.sessions.integer_gemm)
        if warning:
            warnings.warn(warning, RuntimeWarning, stacklevel=3)
        self.device = device_memory(self.decoder)
        tensors = manifest.tensor_names()
        self._enc_outputs = tensors["encoder"]["outputs"]
        self._dec_outputs = tensors["decoder"]["outputs"]
        self.full_plan = LayerPlan.all_layers(self.arch.decoder_layers)
        self._no_hidden = np.zeros((1, 1, self.arch.d_model), np.float32)  # unused input
        self._use_hidden = {False: np.array(False), True: np.array(True)}
        layers = range(self.arch.decoder_layers)
        self._past_names = [(names.past_key(i), names.past_value(i)) for i in layers]
        # past_key.0, past_value.0, past_key.1, ...: the order of the cache's [layer, k|v]
        self._past_flat_names = [name for pair in self._past_names for name in pair]
        self._cross_names = [(names.cross_key(i), names.cross_value(i)) for i in layers]

    def encode(self, ids: np.ndarray, mask: np.ndarray) -> EncoderState:
        """ids, mask int64 [B, S] -> cross-attention K/V for every decoder layer."""
        outs = run_session(self.encoder, self._enc_outputs,
                           {names.ENC_INPUT_IDS: ids, names.ENC_ATTENTION_MASK: mask})
        bias = ((1.0 - mask.astype(np.float32)) * -1e9)[:, None, None, :]
        return EncoderState(outs, np.ascontiguousarray(bias))

    def encode_features(self, features: np.ndarray) -> EncoderState:
        """Whisper: log-mel features float32 [B, mels, frames] -> cross-attention K/V for
        every decoder layer; no source padding (the bias is all zeros)."""
        outs = run_session(self.encoder, self._enc_outputs, {names.ENC_INPUT_FEATURES: features})
        bias = np.zeros((features.shape[0], 1, 1, outs[0].shape[2]), np.float32)
        return EncoderState(outs, bias)

    def new_cache(self, batch: int, max_length: int) -> KVCache:
        a = self.arch
        return KVCache(a.decoder_layers, batch, a.num_heads, max_length, a.head_dim)

    def step(self, tokens: np.ndarray, state: EncoderState, cache: KVCache,
             plan: LayerPlan | None = None, even_rows: bool | None = None) -> np.ndarray:
        """tokens int64 [B, n] -> logits float32 [B, n, vocab]; the cache advances by n."""
        return self.step_hidden(tokens, state, cache, plan, even_rows=even_rows)[0]

    def step_hidden(self, tokens: np.ndarray, state: EncoderState, cache: KVCache,
                    plan: LayerPlan | None = None, hidden: np.ndarray | None = None,
                    even_rows: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Like `step`, optionally starting from `hidden` [B, n, d] (an earlier pass's
        hidden_out) instead of the embeddings; returns (logits, hidden_out). Only the K/V
        of layers that ran or were filled are written: a continuation pass keeps what an
        earlier pass wrote for the layers below it. `even_rows`: this pass's choice (None:
        the sessions'; a draft model's passes run as they come)."""
        plan = plan or self.full_plan
        new = tokens.shape[1]
        even = self.sessions.even_rows if even_rows is None else even_rows
        paired = even and tokens.shape[0] * new % 2 == 1 and self._position_after(cache.length + new)
        if paired:  # one more row, a copy of the last, that no row before it attends to
            tokens = np.concatenate([tokens, tokens[:, -1:]], axis=1)
            if hidden is not None:
                hidden = np.concatenate([hidden, hidden[:, -1:]], axis=1)
        feeds = state.feeds
        if feeds is None:  # the inputs every pass shares; the rest are replaced per pass
            feeds = state.feeds = {names.DEC_ENCODER_BIAS: state.bias}
            for i, (k, v) in enumerate(self._cross_names):
                feeds[k], feeds[v] = state.cross[2 * i], state.cross[2 * i + 1]
            if self.device is not None:  # copied to the GPU once per call, not once per pass
                for name, array in feeds.items():
                    feeds[name] = ort.OrtValue.ortvalue_from_numpy(array, self.device, 0)
        feeds[names.DEC_LAYER_RUN], feeds[names.DEC_LAYER_FILL] = plan.feeds
        feeds[names.DEC_INPUT_IDS] = tokens
        feeds[names.DEC_PAST_LENGTH] = np.array(cache.length, np.int64)
        feeds[names.DEC_HIDDEN_IN] = self._no_hidden if hidden is None else hidden
        feeds[names.DEC_USE_HIDDEN] = self._use_hidden[hidden is not None]
        reads = plan.reads_past
        past = cache.past_contiguous(reads)
        past = past.reshape(past.shape[0] * 2, *past.shape[2:])
        if reads is None:
            feeds.update(zip(self._past_flat_names, past))
        else:  # a skipped layer never reads its past: fed an empty one, its cache not copied
            empty = np.empty((cache.batch, self.arch.num_heads, 0, self.arch.head_dim), np.float32)
            for i, (k, v) in enumerate(self._past_names):
                feeds[k], feeds[v] = (past[2 * i], past[2 * i + 1]) if plan.run[i] else (empty, empty)
        outs = run_session(self.decoder, self._dec_outputs, feeds)
        if paired:  # logits and hidden states [B, n, .], K/V [B, heads, n, head_dim]
            outs = [out[:, :new] for out in outs[:2]] + [out[:, :, :new] for out in outs[2:]]
        cache.write(plan.written, outs, first=2)
        return outs[0], outs[1]

    def _position_after(self, position: int) -> bool:
        """Whether the decoder has a position `position` (relative positions: always)."""
        return self.arch.positions == Positions.RELATIVE or position < self.arch.max_target_positions
