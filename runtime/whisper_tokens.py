"""The manifest's Whisper section (generation["whisper"]): prompt and timestamp token
ids, languages, suppressed tokens and the window's shape, checked against the package's
architecture before any audio is decoded."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeseq.arch import ArchSpec, check_bool, check_int, check_real
from edgeseq.errors import PackageError

# the manifest's Whisper section: token ids, collections of token ids, the rest
_TOKEN_FIELDS = ("sot", "eot", "no_timestamps", "transcribe", "translate", "timestamp_begin")
_LIST_FIELDS = ("languages", "suppress_tokens", "begin_suppress_tokens")
_OTHER_FIELDS = ("is_multilingual", "n_mels", "max_target_positions", "time_precision", "input_stride")
# prompts take up to 4 positions (sot, language, task, notimestamps); fewer positions
# than this leave no room to say anything (0 decoded forever)
_MIN_TARGET_POSITIONS = 8


@dataclass(frozen=True)
class WhisperTokens:
    """The manifest's generation["whisper"] section."""
    sot: int
    eot: int
    no_timestamps: int
    transcribe: int
    translate: int
    timestamp_begin: int
    languages: dict[str, int]
    is_multilingual: bool
    suppress_tokens: tuple[int, ...]
    begin_suppress_tokens: tuple[int, ...]
    n_mels: int
    max_target_positions: int
    time_precision: float
    input_stride: int

    @classmethod
    def from_manifest(cls, generation: dict[str, Any], arch: ArchSpec,
                      package: object = "this package") -> WhisperTokens:
        """The section checked against `arch` (vocabulary, mel bins, decoder positions);
        `package` names the package in errors."""
        w = generation.get("whisper")
        if not isinstance(w, dict):
            raise PackageError(f"{package} has no Whisper section in its manifest; export it "
                               "from a Whisper checkpoint to transcribe audio")
        _check_whisper_section(w, arch, package)
        return cls(**{k: w[k] for k in _TOKEN_FIELDS + _OTHER_FIELDS},
                   languages=dict(w["languages"]),
                   suppress_tokens=tuple(w["suppress_tokens"]),
                   begin_suppress_tokens=tuple(w["begin_suppress_tokens"]))


def _check_whisper_section(w: dict[str, Any], arch: ArchSpec, package: object) -> None:
    """Refuse manifest values that would crash deep in decoding or never end it; the
    PackageError names the package and the field."""
    try:
        _check_whisper_fields(w, arch)
    except PackageError as err:
        raise PackageError(f"{package}: {err}; re-export the package") from None


def _check_whisper_fields(w: dict[str, Any], arch: ArchSpec) -> None:
    where, top = "generation.whisper.", arch.vocab_size - 1
    missing = [k for k in _TOKEN_FIELDS + _LIST_FIELDS + _OTHER_FIELDS if k not in w]
    if missing:
        raise PackageError(f"manifest {where[:-1]} lacks {missing}")
    for name in _TOKEN_FIELDS:
        check_int(w[name], where + name, 0, top)
    for name in _LIST_FIELDS:  # languages maps codes to ids; the others list ids
        value, kind = w[name], dict if name == "languages" else list
        if not isinstance(value, kind):
            raise PackageError(f"manifest {where}{name} must be a JSON "
                               f"{'object' if kind is dict else 'list'}, got {value!r:.40}")
        for key, token in value.items() if kind is dict else enumerate(value):
            check_int(token, f"{where}{name}[{key!r}]", 0, top)
    check_bool(w["is_multilingual"], where + "is_multilingual")
    check_int(w["max_target_positions"], where + "max_target_positions", _MIN_TARGET_POSITIONS,
              arch.max_target_positions)
    check_int(w["input_stride"], where + "input_stride", 1)
    if check_real(w["time_precision"], where + "time_precision") <= 0:
        raise PackageError(f"manifest {where}time_precision must be > 0 seconds, "
                           f"got {w['time_precision']!r}")
    mels = check_int(w["n_mels"], where + "n_mels", 1)
    if arch.num_mel_bins and mels != arch.num_mel_bins:
        raise PackageError(f"manifest {where}n_mels is {mels} but arch.num_mel_bins (the "
                           f"encoder's input) is {arch.num_mel_bins}")
