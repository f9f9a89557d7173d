"""Hostile text and options: every Unicode plane, control characters, lone surrogates,
bytes, empty and over-long inputs, random generation options. Each gives a clear typed
error or a correct result, never a crash inside the tokenizer or onnxruntime. Streams
can be stopped from their own thread while others generate."""
from __future__ import annotations

import threading
import unicodedata

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import edgeseq
from edgeseq.errors import InputError, MemoryBudgetError, OptionsError
from edgeseq.runtime.options import GenerationOptions

FIXTURES = [HealthCheck.function_scoped_fixture]
# every code point of every plane, lone surrogates too (hypothesis leaves them out unless
# asked for by category)
ANY_CHARACTER = st.one_of(st.characters(min_codepoint=0, max_codepoint=0x10FFFF),
                          st.characters(categories=["Cs"]),
                          st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn"]))


@pytest.fixture(scope="module")
def text_package(t5_text_package):
    return t5_text_package


@pytest.fixture(scope="module")
def engine(text_package):
    return edgeseq.load(str(text_package), threads=1)


@pytest.fixture(scope="module")
def ids_engine(tiny_package):
    return edgeseq.load(str(tiny_package("bart", "fp32")[0]), threads=1)


# -- text --------------------------------------------------------------------------------
def _says_nothing_to_encode(err: InputError, text: str) -> bool:
    """The error says the text is empty to the tokenizer, or, for text of format
    characters and spaces only (a soft hyphen, say), that nothing in it is visible."""
    invisible = all(unicodedata.category(ch) in {"Cf", "Zs", "Zl", "Zp"} for ch in text.strip())
    return "empty" in str(err) or (invisible and "no visible characters" in str(err))


def _check_result(engine, result, max_new_tokens: int) -> None:
    assert isinstance(result.text, str)
    result.text.encode("utf-8")  # valid Unicode out, whatever came in
    assert 1 <= len(result.token_ids) <= max_new_tokens
    assert all(0 <= t < engine.arch.vocab_size for t in result.token_ids)


@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURES)
@given(text=st.text(ANY_CHARACTER, max_size=40))
def test_any_text_gives_a_result_or_an_input_error(engine, text):
    lone = any(0xD800 <= ord(c) <= 0xDFFF for c in text.encode("utf-16-le", "surrogatepass")
               .decode("utf-16-le", "surrogatepass"))
    try:
        result = engine.generate(text, max_new_tokens=3)
    except InputError as err:
        assert lone or _says_nothing_to_encode(err, text), err
        return
    assert not lone
    _check_result(engine, result, 3)


@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURES)
@given(text=st.text(st.characters(codec="utf-8"), min_size=1, max_size=60))
def test_the_tokenizer_round_trip_stays_in_the_vocabulary(engine, text):
    assume(text.strip())
    try:
        ids = engine.codec.encode(text)
    except InputError as err:
        assert _says_nothing_to_encode(err, text), err
        return
    assert ids and all(0 <= t < engine.arch.vocab_size for t in ids)
    assert isinstance(engine.codec.decode(ids), str)


@pytest.mark.parametrize("text", ["\x00", "\x00\x01\x1f\x7f", "\u0301", "\ufffe", "\U0010ffff",
                                  "a\U000e0001", "\U0001f600" * 5, "\uffff\ufffd", "a\x00b"])
def test_control_characters_and_every_plane_decode(engine, text):
    _check_result(engine, engine.generate(text, max_new_tokens=2), 2)


@pytest.mark.parametrize("text", ["", " ", "\n\t\r ", "\u3000\u2003", "\u200b", "\ufeff\u200b",
                                  "\u2060", "\u00ad", "\u202e", "\u180e", "\U000e0001"])
def test_empty_whitespace_and_invisible_only_text_is_refused(engine, text):
    with pytest.raises(InputError, match="empty|no visible characters"):
        engine.generate(text)


def test_invisible_only_text_is_refused_where_the_tokenizer_gives_it_tokens():
    """The default model's tokenizer maps a zero-width space to a word mark and <unk>."""
    engine = edgeseq.load("default", threads=1)
    for text in ("\u200b", "\ufeff \u2060"):
        with pytest.raises(InputError, match="no visible characters"):
            engine.generate(text)
    assert engine.generate("\u200bhi", max_new_tokens=4).token_ids  # visible text around them


def test_lone_surrogates_are_refused_and_pairs_are_joined(engine):
    with pytest.raises(InputError, match=r"lone surrogate U\+D800 at index 5"):
        engine.generate("hello\ud800 world")
    with pytest.raises(InputError, match=r"lone surrogate U\+DC00 at index 0"):
        engine.generate(["fine", "\udc00x"])
    paired = engine.generate("smile \ud83d\ude00", max_new_tokens=4)
    assert paired.token_ids == engine.generate("smile \U0001f600", max_new_tokens=4).token_ids


@pytest.mark.parametrize("data, message", [
    (b"\xff\xfe bad", r"bytes that are not valid UTF-8 \(invalid start byte at byte 0\)"),
    ("caf\u00e9".encode("latin-1"), r"not valid UTF-8 \(.* at byte 3\)"),
    (b"fine utf-8", r"input is bytes; pass text as a str"),
    (bytearray(b"x"), r"input is bytes"),
    (["ok", b"\xc3"], r"not valid UTF-8"),
])
def test_bytes_are_refused_with_what_to_do(engine, data, message):
    with pytest.raises(InputError, match=message):
        engine.generate(data)


def test_over_long_text_is_refused_or_truncated(engine):
    text = "word " * 5000
    limit = engine.arch.max_source_positions
    with pytest.raises(InputError, match=f"this model takes at most {limit}"):
        engine.generate(text, max_new_tokens=2)
    _check_result(engine, engine.generate(text, max_new_tokens=2, truncate_input=True), 2)


# -- options -----------------------------------------------------------------------------
def _option_values(draw_engine):
    """Good values, wrong types, out-of-range and non-finite values for each option."""
    ints = st.one_of(st.integers(-2, 6), st.sampled_from([True, "3", 2.0, None, 10**30]))
    floats = st.one_of(st.floats(-1, 2), st.sampled_from([float("nan"), float("inf"), "0.5",
                                                          True, None, 10**400]))
    flags = st.one_of(st.booleans(), st.sampled_from([0, 1, "yes", None]))
    return {
        "max_new_tokens": st.one_of(st.integers(-1, 8), st.sampled_from(["5", True, 4.0, None])),
        "min_new_tokens": ints, "do_sample": flags, "temperature": floats, "top_k": ints,
        "top_p": floats, "seed": st.one_of(st.integers(-3, 2**70), st.sampled_from(["1", True])),
        "num_beams": st.one_of(st.integers(-1, 3), st.sampled_from([True, "2"])),
        "length_penalty": floats, "early_stopping": flags, "truncate_input": flags,
        "draft": st.sampled_from([None, "input", "ngram", "layers", "magic", 3, draw_engine]),
        "max_draft": st.one_of(st.integers(-1, 6), st.sampled_from([10**9, "4", True])),
        "exit_layer": ints, "draft_confidence": floats, "adaptive_draft": flags,
        "memory_budget_mb": st.one_of(st.none(), st.floats(-1, 10_000), st.sampled_from(
            [float("nan"), "100"])),
        "skip_ratio": st.one_of(st.none(), floats), "exit_after": ints,
        "exit_threshold": st.one_of(st.none(), floats),
        "exit_measure": st.sampled_from(["top1", "margin", "median", 1]),
        "exit_layers": st.sampled_from([None, (1, 2), (1, "2"), [2], 5]),
    }


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURES)
@given(data=st.data())
def test_random_options_give_a_named_options_error_or_a_valid_result(ids_engine, data):
    pool = _option_values(ids_engine)
    known = set(GenerationOptions.__dataclass_fields__)
    chosen = data.draw(st.lists(st.sampled_from(sorted(set(pool) & known)), max_size=5, unique=True))
    kwargs = {name: data.draw(pool[name], label=name) for name in chosen}
    try:
        result = ids_engine.generate([[5, 9, 13, 22, 2], [30, 31, 2]], **kwargs)
    except OptionsError as err:
        assert any(name in str(err) for name in kwargs), (kwargs, err)
        return
    except MemoryBudgetError:
        assert "memory_budget_mb" in kwargs
        return
    limit = GenerationOptions(**kwargs).max_new_tokens
    for row in result:
        assert 1 <= len(row.token_ids) <= limit
        assert all(0 <= t < ids_engine.arch.vocab_size for t in row.token_ids)


@pytest.mark.parametrize("options, message", [
    (dict(max_new_tokens="5"), r"max_new_tokens must be an int, got '5'"),
    (dict(max_new_tokens=True), r"max_new_tokens must be an int, got True"),
    (dict(num_beams=2.0), r"num_beams must be an int"),
    (dict(do_sample=True, temperature=float("nan")), r"temperature must be a finite number"),
    (dict(do_sample=True, top_p=float("inf")), r"top_p must be a finite number"),
    (dict(do_sample=True, seed=-1), r"seed must be >= 0"),
    (dict(do_sample=1), r"do_sample must be True or False"),
    (dict(max_draft=10**9, draft="input"), r"max_draft must be in 1\.\.128"),
    (dict(draft=3), r"draft must be one of"),
    (dict(draft="layers", exit_layer=7), r"exit_layer must be in 1\.\.2"),
    (dict(draft="layers", exit_layer=0), r"exit_layer must be >= 1"),
    (dict(memory_budget_mb=float("nan")), r"memory_budget_mb must be a finite number"),
    (dict(exit_threshold=0.5, exit_layers=(1, "2")), r"exit_layers must be a tuple of ints"),
])
def test_wrong_types_and_values_name_the_option(ids_engine, options, message):
    with pytest.raises(OptionsError, match=message):
        ids_engine.generate([5, 6, 2], **options)


@pytest.mark.parametrize("threads", [-1, 1.5, True, "2", 10**9])
def test_bad_thread_counts_are_refused_by_name(tiny_package, threads):
    with pytest.raises(OptionsError, match=r"threads must be an int in 0\.\.1024"):
        edgeseq.load(str(tiny_package("bart", "fp32")[0]), threads=threads)


@pytest.mark.parametrize("name", ["spin", "shared_pool"])
def test_thread_pool_switches_must_be_booleans(tiny_package, name):
    with pytest.raises(OptionsError, match=f"{name} must be True or False"):
        edgeseq.load(str(tiny_package("bart", "fp32")[0]), **{name: "no"})


# -- cancellation ------------------------------------------------------------------------
TEXTS = ["translate English to German: The house is small.",
         "summarize: edge devices are small and slow", "fix: she go to school every days"]


def test_a_thread_stops_its_stream_early_while_others_generate(engine):
    kw = dict(max_new_tokens=24, min_new_tokens=24)
    want = {t: engine.generate(t, **kw).text for t in TEXTS}
    errors, stopped = [], []

    def stop_early(text: str, after: int) -> None:
        try:
            stream = engine.stream(text, **kw)
            pieces = [next(stream) for _ in range(after)]
            stream.close()  # stops decoding; the generator is finished
            assert list(stream) == [] and want[text].startswith("".join(pieces))
            stopped.append(after)
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    def generate(text: str) -> None:
        try:
            assert engine.generate(text, **kw).text == want[text]
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=stop_early, args=(t, 1 + i % 3)) for i, t in
               enumerate(TEXTS * 2)] + [threading.Thread(target=generate, args=(t,)) for t in TEXTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(stopped) == 6
    assert {t: engine.generate(t, **kw).text for t in TEXTS} == want  # still usable


def test_an_abandoned_or_speculative_stream_can_be_dropped(engine):
    kw = dict(max_new_tokens=16, min_new_tokens=16)
    want = engine.generate(TEXTS[0], **kw).text
    for draft in (None, "input", "layers"):
        stream = engine.stream(TEXTS[0], draft=draft, **kw)
        next(stream)
        del stream  # garbage-collected mid-decode, never closed explicitly
    assert engine.generate(TEXTS[0], **kw).text == want


def test_text_of_a_soft_hyphen_alone_says_nothing_in_it_is_visible(engine):
    """Found by the round-trip property: U+00AD is a format character that strip() keeps."""
    with pytest.raises(InputError, match="no visible characters"):
        engine.codec.encode("\xad")
