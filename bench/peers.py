"""One small runner per engine, behind a common interface, for bench/decode.py.

Each runner is used in child processes: ``bind`` names the source checkpoint and the
runner's cache folder, ``prepare`` (export, convert or quantize into that folder, in a
child of its own so that it does not count in peak memory), ``imports`` (timed apart),
``load`` (what a user pays at start-up once the packages are imported) and ``generate``
(greedy, exactly ``new_tokens`` new tokens). A package that cannot be imported raises
``PeerMissing``; anything else is a failure.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

REPO_ROOT = Path(__file__).resolve().parent.parent
# transformers 5 breaks optimum-onnx (it wants transformers < 4.58); bench/optimum_env.py
# builds this side environment that layers transformers 4.57 over the main venv.
OPTIMUM_PYTHON = REPO_ROOT / "bench" / ".cache" / "optimum-venv" / "bin" / "python"


class PeerMissing(Exception):
    """The engine's package is not installed or not importable."""


@dataclass(frozen=True)
class Stat:
    median: float
    min: float
    max: float


@dataclass
class EngineResult:
    """What one engine measured on one shape; ``status`` is "ok", "missing" or "failed"."""

    engine: str
    label: str
    shape: str
    status: str
    reason: str = ""
    prepare_s: float | None = None  # export / convert / quantize, done once and cached
    import_s: float | None = None  # importing the engine's packages
    load_s: float | None = None
    first_token_ms: Stat | None = None  # wall time of a generate call for 1 new token
    full_ms: Stat | None = None  # wall time of a generate call for new_tokens
    decode_tokens_per_s: Stat | None = None  # median: (n-1)/(median t_n - median t_1)
    peak_rss_mb: float | None = None  # ru_maxrss of the measuring child process
    base_rss_mb: float | None = None  # RSS after imports, before loading the model
    size_mb: float | None = None  # files the engine loads
    others_cpu_cores: float | None = None  # other processes' CPU use while timing (noise)
    new_tokens: int = 0
    same_prefix: int | None = None  # leading tokens equal to transformers' on this shape
    token_ids: list[int] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


class Engine(Protocol):
    label: str

    def bind(self, ckpt: Path, work: Path) -> None: ...
    def prepare(self, refresh: bool) -> None: ...
    def imports(self) -> None: ...
    def load(self, threads: int) -> None: ...
    def generate(self, ids: list[int], new_tokens: int) -> list[int]: ...
    def files(self) -> list[Path]: ...
    def info(self) -> dict: ...


def _import(name: str):
    try:
        return __import__(name, fromlist=["_"])
    except ImportError as exc:
        raise PeerMissing(f"{name}: {exc}") from exc


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".done")


def _done(folder: Path) -> bool:
    return (folder / ".done").exists()


def _mark_done(folder: Path) -> None:
    (folder / ".done").write_text("ok\n")


def _versions(*dists: str) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


class TransformersEngine:
    label = "transformers fp32"

    def bind(self, ckpt: Path, work: Path) -> None:
        self.ckpt = ckpt

    def prepare(self, refresh: bool) -> None:
        pass

    def imports(self) -> None:
        self.torch = _import("torch")
        self.transformers = _import("transformers")

    def load(self, threads: int) -> None:
        self.torch.set_num_threads(threads)
        model_class = self.transformers.T5ForConditionalGeneration
        self.model = model_class.from_pretrained(self.ckpt).eval()

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        x = self.torch.tensor([ids])
        with self.torch.inference_mode():
            out = self.model.generate(
                input_ids=x, attention_mask=self.torch.ones_like(x), do_sample=False,
                num_beams=1, min_new_tokens=new_tokens, max_new_tokens=new_tokens,
            )
        return out[0, 1:].tolist()  # drop the decoder start token

    def files(self) -> list[Path]:
        return _files_under(self.ckpt)

    def info(self) -> dict:
        return {"versions": _versions("torch", "transformers")}


class OptimumEngine:
    """ORTModelForSeq2SeqLM: default export (encoder, decoder, decoder_with_past)."""

    def __init__(self, quantize: bool) -> None:
        self.quantize = quantize
        self.label = "Optimum ORT dynamic int8" if quantize else "Optimum ORT fp32"

    def bind(self, ckpt: Path, work: Path) -> None:
        self.ckpt, self.fp32_dir = ckpt, work.parent / "ort-fp32"
        self.dir = work if self.quantize else self.fp32_dir

    def prepare(self, refresh: bool) -> None:
        ort = _import("optimum.onnxruntime")
        fp32_dir, work = self.fp32_dir, self.dir
        if refresh or not _done(fp32_dir):
            shutil.rmtree(fp32_dir, ignore_errors=True)
            model = ort.ORTModelForSeq2SeqLM.from_pretrained(self.ckpt, export=True)
            model.save_pretrained(fp32_dir)
            _mark_done(fp32_dir)
        if not self.quantize or (_done(work) and not refresh):
            return
        shutil.rmtree(work, ignore_errors=True)
        config = _import("optimum.onnxruntime.configuration")
        # per_channel=True is Optimum's default for this preset.
        qconfig = config.AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)
        for onnx_file in sorted(fp32_dir.glob("*.onnx")):
            quantizer = ort.ORTQuantizer.from_pretrained(fp32_dir, file_name=onnx_file.name)
            quantizer.quantize(save_dir=work, quantization_config=qconfig)
        for name in ("config.json", "generation_config.json"):
            if (fp32_dir / name).exists():
                shutil.copy(fp32_dir / name, work / name)
        _mark_done(work)

    def imports(self) -> None:
        self.torch = _import("torch")
        self.onnxruntime = _import("onnxruntime")
        self.ort = _import("optimum.onnxruntime")

    def load(self, threads: int) -> None:
        onnxruntime = self.onnxruntime
        self.torch.set_num_threads(threads)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        names = {}
        if self.quantize:
            names = {
                "encoder_file_name": "encoder_model_quantized.onnx",
                "decoder_file_name": "decoder_model_quantized.onnx",
                "decoder_with_past_file_name": "decoder_with_past_model_quantized.onnx",
            }
        self.model = self.ort.ORTModelForSeq2SeqLM.from_pretrained(
            self.dir, provider="CPUExecutionProvider", session_options=opts, **names
        )

    generate = TransformersEngine.generate

    def files(self) -> list[Path]:
        return _files_under(self.dir)

    def info(self) -> dict:
        onnx = {p.name: round(p.stat().st_size / 2**20, 1) for p in self.files()
                if p.suffix in (".onnx", ".onnx_data")}
        return {
            "versions": _versions("optimum", "optimum-onnx", "transformers", "onnxruntime",
                                  "torch"),
            "onnx_files_mb": onnx,
            "decoder_copies": sum(1 for name in onnx if name.startswith("decoder")),
        }


class _SyntheticTokenizer:
    """Just enough of a tokenizer for CTranslate2's T5 converter: one token per id."""

    def __init__(self, vocab_size: int) -> None:
        self.tokens = ["<pad>", "</s>", "<unk>"] + [f"t{i}" for i in range(3, vocab_size)]
        self.pad_token, self.eos_token, self.unk_token = self.tokens[:3]

    def get_vocab(self) -> dict[str, int]:
        return {tok: i for i, tok in enumerate(self.tokens)}

    def convert_ids_to_tokens(self, i: int) -> str:
        return self.tokens[i]


class CTranslate2Engine:
    def __init__(self, compute_type: str) -> None:
        self.compute_type = compute_type
        self.label = f"CTranslate2 {compute_type}"

    def bind(self, ckpt: Path, work: Path) -> None:
        self.ckpt, self.dir = ckpt, work
        self.vocab_size = json.loads((ckpt / "config.json").read_text())["vocab_size"]

    def prepare(self, refresh: bool) -> None:
        ct2 = _import("ctranslate2")
        work, vocab_size = self.dir, self.vocab_size
        if _done(work) and not refresh:
            return
        shutil.rmtree(work, ignore_errors=True)

        class Converter(ct2.converters.TransformersConverter):
            def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
                return _SyntheticTokenizer(vocab_size)

        Converter(str(self.ckpt)).convert(str(work), quantization=self.compute_type, force=True)
        _mark_done(work)

    def imports(self) -> None:
        self.ct2 = _import("ctranslate2")

    def load(self, threads: int) -> None:
        self.translator = self.ct2.Translator(
            str(self.dir), device="cpu", compute_type=self.compute_type,
            inter_threads=1, intra_threads=threads,
        )
        self.tok = _SyntheticTokenizer(self.vocab_size)
        self.ids = self.tok.get_vocab()

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        source = [self.tok.tokens[i] for i in ids]
        out = self.translator.translate_batch(
            [source], beam_size=1, min_decoding_length=new_tokens,
            max_decoding_length=new_tokens, return_scores=False,
        )
        return [self.ids[t] for t in out[0].hypotheses[0]]

    def files(self) -> list[Path]:
        return _files_under(self.dir)

    def info(self) -> dict:
        return {"versions": _versions("ctranslate2")}


class EdgeseqEngine:
    def __init__(self, quant: str, shared_pool: bool = False, int8_encoder: str = "rows") -> None:
        self.quant = quant
        self.shared_pool = shared_pool  # as the `edgeseq` command runs (runtime/providers.py)
        self.int8_encoder = int8_encoder  # export's choice for int8 / int4 encoders
        self.label = f"edgeseq {quant}" + (" (shared pool, as the CLI)" if shared_pool else "") + \
            (", MatMulNBits encoder" if int8_encoder == "blocks" else "")

    def bind(self, ckpt: Path, work: Path) -> None:
        self.ckpt, self.dir = ckpt, work

    def prepare(self, refresh: bool) -> None:
        export = _import("edgeseq.export")
        if not hasattr(export, "export_checkpoint"):
            raise PeerMissing("edgeseq.export has no export_checkpoint yet")
        # edgeseq changes under our feet: re-export on every run rather than trust a cache.
        shutil.rmtree(self.dir, ignore_errors=True)
        export.export_checkpoint(self.ckpt, self.dir, quant=self.quant, validate=True,
                                 int8_encoder=self.int8_encoder)
        _mark_done(self.dir)

    def imports(self) -> None:
        self.edgeseq = _import("edgeseq")
        if not hasattr(self.edgeseq, "load"):
            raise PeerMissing("edgeseq has no load() yet")

    def load(self, threads: int) -> None:
        self.engine = self.edgeseq.load(self.dir, provider="cpu", threads=threads,
                                        shared_pool=self.shared_pool)
        self.last_stats = None

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        result = self.engine.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                      draft=None)
        self.last_stats = result.stats
        return list(result.token_ids)

    def files(self) -> list[Path]:
        return _files_under(self.dir)

    def info(self) -> dict:
        import hashlib

        manifest = self.dir / "manifest.json"
        stats = getattr(self, "last_stats", None)  # absent after a prepare-only run
        return {
            "versions": _versions("edgeseq", "onnxruntime"),
            "package_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest()
            if manifest.exists() else None,
            "self_reported": None if stats is None else {
                "first_token_ms": stats.first_token_ms,
                "tokens_per_s": stats.tokens_per_s,
                "decoder_passes": stats.decoder_passes,
            },
        }


ENGINES = {
    "transformers": TransformersEngine,
    "ort-fp32": lambda: OptimumEngine(quantize=False),
    "ort-int8": lambda: OptimumEngine(quantize=True),
    "ct2-int8": lambda: CTranslate2Engine("int8"),
    "ct2-fp32": lambda: CTranslate2Engine("float32"),
    "edgeseq-int8": lambda: EdgeseqEngine("int8"),
    "edgeseq-int8-shared": lambda: EdgeseqEngine("int8", shared_pool=True),
    "edgeseq-fp32": lambda: EdgeseqEngine("fp32"),
    # not in the default run: the int4 encoder choice (python -m bench.decode --engines ...)
    "edgeseq-int4": lambda: EdgeseqEngine("int4"),
    "edgeseq-int4-blocks": lambda: EdgeseqEngine("int4", int8_encoder="blocks"),
}
DEFAULT_ENGINES = [name for name in ENGINES if "int4" not in name]


def make_engine(name: str) -> Engine:
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose from {sorted(ENGINES)}")
    return ENGINES[name]()


def python_for(name: str) -> str:
    """The interpreter that runs ``name``: Optimum gets its side environment if built."""
    if name.startswith("ort-") and OPTIMUM_PYTHON.exists():
        return str(OPTIMUM_PYTHON)
    return sys.executable
