"""Typed errors raised at edgeseq's boundaries; each message says what to do."""


class EdgeseqError(Exception):
    """Base class of every error edgeseq raises on purpose."""


class UnsupportedModelError(EdgeseqError, ValueError):
    """The checkpoint's architecture is not one edgeseq can export."""


class ExportError(EdgeseqError, ValueError):
    """An export that cannot be done as asked (its package would replace the checkpoint,
    or a folder that is not an edgeseq package)."""


class ExportValidationError(EdgeseqError):
    """The exported graphs do not match PyTorch within the stated tolerance."""


class PackageError(EdgeseqError, ValueError):
    """A model package is missing, corrupt, or does not match its manifest."""


class ProviderError(EdgeseqError, ValueError):
    """An execution provider name edgeseq does not know."""


class OnnxruntimeVersionError(EdgeseqError, RuntimeError):
    """The installed onnxruntime is older than edgeseq supports."""


class ProviderFailure(EdgeseqError, RuntimeError):
    """An execution provider failed while running a graph (out of GPU memory, say)."""


class InputError(EdgeseqError, ValueError):
    """A generation input that the model cannot take (empty, too long, text without tokenizer)."""


class AudioError(InputError):
    """Audio that cannot be read or used (a missing file, a corrupt WAV, an odd array)."""


class OptionsError(EdgeseqError, ValueError):
    """Generation options that are out of range or conflict; the message names the option."""


class MemoryBudgetError(EdgeseqError, ValueError):
    """A memory budget below what plain decoding needs."""
