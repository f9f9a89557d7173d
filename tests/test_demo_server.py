"""The demo's HTTP API with a real server, a real client and a real (tiny) exported model:
streaming, speculation figures, limits, errors, ids instead of paths, concurrency."""
from __future__ import annotations

import http.client
import io
import json
import shutil
import sys
import threading
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # mobile_demo/ is not an installed package
    sys.path.insert(0, str(ROOT))

import edgeseq  # noqa: E402
from mobile_demo.server import DemoServer, make_server  # noqa: E402

MODEL_ID = "tiny-t5"


def demo_models(tmp_path_factory, tokenizer: Path) -> Path:
    """A models folder with one tiny random T5 package (real T5 tokenizer), built once per
    test session and shared by the demo's test modules."""
    root = tmp_path_factory.getbasetemp() / "demo-models"
    if (root / MODEL_ID / "manifest.json").is_file():
        return root
    from edgeseq.export import export_checkpoint
    from tiny_models import build_t5_text_checkpoint
    work = tmp_path_factory.mktemp("demo-build")
    # validate=False: export's own tests compare ONNX with PyTorch; here it only costs time
    export_checkpoint(build_t5_text_checkpoint(work / "ck"), work / MODEL_ID, quant="int8",
                      tokenizer=tokenizer, validate=False)
    root.mkdir(exist_ok=True)
    shutil.move(str(work / MODEL_ID), str(root / MODEL_ID))  # whole, or not at all
    return root


def start_server(models_dir: Path) -> DemoServer:
    server = make_server("127.0.0.1", 0, models_dir)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, t5_tokenizer_file) -> Path:
    return demo_models(tmp_path_factory, t5_tokenizer_file)


@pytest.fixture(scope="module")
def server(models_dir):
    server = start_server(models_dir)
    yield server
    server.shutdown()
    server.server_close()


# -- a small real client ----------------------------------------------------------------
def request(server: DemoServer, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, bytes, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), response
    finally:
        conn.close()


def generate(server: DemoServer, payload: dict) -> tuple[int, list[tuple[str, dict]] | dict]:
    """POST /api/generate; (200, [(event, data), ...]) or (status, {"error": ...})."""
    status, body, response = request(server, "POST", "/api/generate", json.dumps(payload).encode(),
                                     {"Content-Type": "application/json"})
    if status != 200:
        return status, json.loads(body)
    assert response.getheader("Content-Type").startswith("text/event-stream")
    events = []
    for frame in body.decode().split("\n\n"):
        if frame.strip():
            lines = dict(line.split(": ", 1) for line in frame.split("\n"))
            events.append((lines["event"], json.loads(lines["data"])))
    return status, events


def fix(text: str, **settings) -> dict:
    return {"task": "fix", "text": text, "settings": {"max_new_tokens": 12, **settings}}


def wav_bytes(seconds: float = 0.5, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buffer.getvalue()


def default_installed() -> bool:
    from edgeseq.errors import PackageError
    from edgeseq.runtime.engine import resolve_package
    try:
        resolve_package("default")
    except PackageError:
        return False
    return True


# -- listing ----------------------------------------------------------------------------
def test_lists_models_profiles_and_limits(server):
    status, body, _ = request(server, "GET", "/api/models")
    info = json.loads(body)
    assert status == 200
    assert MODEL_ID in [m["id"] for m in info["models"]]
    assert info["default_missing"] is not default_installed()
    assert info["fix_model"] == ("default" if default_installed() else MODEL_ID)
    assert info["whisper_model"] is None and "edgeseq export" in info["whisper_hint"]
    pi4 = info["profiles"]["pi4"]
    assert (pi4["threads"], pi4["memory_budget_mb"]) == (4, 1500)
    assert info["limits"]["max_text_chars"] == 2000
    assert all("source" not in m and "path" not in m for m in info["models"])  # no local paths


def test_serves_the_offline_page_and_nothing_else(server):
    status, body, response = request(server, "GET", "/")
    assert status == 200 and b'src="/static/app.js"' in body
    assert "default-src 'self'" in response.getheader("Content-Security-Policy")
    assert b"http://" not in body and b"https://" not in body  # no CDN
    assert request(server, "GET", "/static/app.js")[0] == 200
    assert request(server, "GET", "/static/style.css")[0] == 200
    for path in ("/static/../server.py", "/static/index.html/..", "/etc/passwd", "/api/nope"):
        assert request(server, "GET", path)[0] == 404, path


def test_refuses_other_host_names_on_localhost(server):
    status, body, _ = request(server, "GET", "/api/models", headers={"Host": "evil.example"})
    assert status == 403 and "not this machine" in json.loads(body)["error"]


# -- text answers -----------------------------------------------------------------------
def test_fix_drafts_from_the_input_and_answers_whole_with_changes(server, models_dir):
    text = "She go to school every days."
    status, events = generate(server, fix(text))  # drafter "auto"
    assert status == 200 and [name for name, _ in events] == ["done"]
    done = events[0][1]
    f = done["figures"]
    assert done["streamed"] is False and f["timed_by"] == "engine" and f["tokens"] > 1
    assert f["speculation"]["verify_passes"] >= 1 and f["memory"]["rss_mb"] > 0
    changes = done["changes"]
    assert " ".join(c["before"] for c in changes if c["before"]).split() == text.split()
    assert " ".join(c["after"] for c in changes if c["after"]).split() == done["text"].split()
    _, plain = generate(server, fix(text, drafter="none"))
    assert plain[-1][1]["text"] == done["text"]  # drafting changes the speed, not the answer
    if default_installed():
        # the grammar model reranks its whole output against the input: nothing streams,
        # and the figures are the engine's, not a one-piece "stream"
        assert [name for name, _ in plain] == ["done"] and plain[0][1]["streamed"] is False
        assert plain[0][1]["figures"]["timed_by"] == "engine"
        assert plain[0][1]["figures"]["tokens"] > 1
    else:  # the answer is the engine's own greedy answer
        engine = edgeseq.load(str(models_dir / MODEL_ID), threads=1)
        assert done["text"] == engine.generate(text, max_new_tokens=12).text


def test_free_generation_streams_pieces_then_the_answer(server):
    status, events = generate(server, {"task": "generate", "model": MODEL_ID, "text": "hello",
                                       "settings": {"max_new_tokens": 5}})
    assert status == 200
    names = [name for name, _ in events]
    assert names[-1] == "done" and names.count("done") == 1 and names.count("piece") >= 1
    done = events[-1][1]
    assert "".join(d["text"] for n, d in events if n == "piece") == done["text"]
    assert done["streamed"] is True and done["figures"]["timed_by"] == "stream"
    assert done["figures"]["first_token_ms"] > 0 and done["model"] == MODEL_ID
    assert done["changes"] is None


@pytest.mark.parametrize("drafter", ["input", "ngram", "layers"])
def test_a_drafter_answers_whole_with_speculation_figures(server, drafter):
    text = "the cat sat on the mat, the cat sat."
    _, plain = generate(server, fix(text))
    status, events = generate(server, fix(text, drafter=drafter))
    assert status == 200 and [name for name, _ in events] == ["done"]
    done = events[0][1]
    assert done["text"] == plain[-1][1]["text"]  # greedy speculative == greedy plain
    f = done["figures"]
    assert done["streamed"] is False and f["timed_by"] == "engine" and f["decoder_passes"] >= 1
    spec = f["speculation"]
    assert 0 <= spec["acceptance_rate"] <= 1 and sum(spec["accepted_histogram"].values()) >= 1
    if drafter == "layers":
        assert 0 < f["layers_per_pass"] <= f["decoder_layers"]
    else:
        assert f["layers_per_pass"] is None


def test_beam_search_answers_whole(server):
    status, events = generate(server, fix("a small test", decoding="beam", num_beams=2,
                                          max_new_tokens=4))
    assert status == 200 and [name for name, _ in events] == ["done"]
    assert events[0][1]["figures"]["first_token_ms"] is None


def test_sampling_streams(server):
    status, events = generate(server, fix("a small test", decoding="sample", temperature=0.7,
                                          top_p=0.9))
    assert status == 200 and events[-1][1]["streamed"] is True


def test_a_memory_budget_is_planned_and_reported(server):
    status, events = generate(server, fix("a small test", memory_budget_mb=1500))
    memory = events[-1][1]["figures"]["memory"]
    assert status == 200 and memory["budget_mb"] == 1500 and 0 < memory["planned_mb"] < 1500
    status, error = generate(server, fix("a small test", memory_budget_mb=1))
    assert status == 400 and "memory budget of 1 MB" in error["error"]


# -- refusals ---------------------------------------------------------------------------
@pytest.mark.parametrize("payload, status, message", [
    (fix(""), 400, "empty"),
    (fix("   \n "), 400, "empty"),
    (fix("x" * 2001), 400, "at most 2000"),
    (fix("ok", decoding="beam", drafter="input"), 400, "beam search"),
    (fix("ok", temperature=-1), 400, "temperature must be"),
    (fix("ok", threads=True), 400, "threads must be an integer"),
    (fix("ok", decoding="fast"), 400, "decoding must be one of"),
    (fix("ok", colour="red"), 400, "unknown setting"),
    ({"task": "generate", "text": "ok"}, 400, "choose a model"),
    ({"task": "generate", "model": "no-such-model", "text": "ok"}, 404, "no model with id"),
    ([1, 2], 400, "JSON object"),
])
def test_bad_requests_get_a_status_and_a_clear_message(server, payload, status, message):
    got, body = generate(server, payload)
    assert got == status and message in body["error"]


@pytest.mark.parametrize("path, content_type", [("/api/generate", "application/json"),
                                                 ("/api/transcribe", "audio/wav")])
def test_a_body_over_the_limit_is_refused_before_it_is_read(server, path, content_type):
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    conn.putrequest("POST", path)
    conn.putheader("Content-Type", content_type)
    conn.putheader("Content-Length", str(10**9))  # announced, never sent: the answer
    conn.endheaders()                               # cannot wait for it
    response = conn.getresponse()
    assert response.status == 413 and "at most" in json.loads(response.read())["error"]
    conn.close()


def test_a_body_needs_the_right_content_type(server):
    status, body, _ = request(server, "POST", "/api/generate", json.dumps(fix("ok")).encode(),
                              {"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in json.loads(body)["error"]


def test_path_like_model_ids_are_unknown_and_read_no_file(server, models_dir):
    opened: list[str] = []
    watching = threading.Event()

    def audit(event: str, args: tuple) -> None:
        if watching.is_set() and event == "open" and isinstance(args[0], (str, bytes, Path)):
            opened.append(str(args[0]))
    sys.addaudithook(audit)  # hooks cannot be removed; this one only records while watching
    ids = ["../../etc", "../../../../etc/passwd", "/etc/passwd", str(models_dir / MODEL_ID)]
    watching.set()
    try:
        for model in ids:
            status, body = generate(server, {"task": "generate", "model": model, "text": "hi"})
            assert status == 404 and "no model with id" in body["error"]
            status, raw, _ = request(server, "POST", f"/api/transcribe?model={model}",
                                     wav_bytes(0.1), {"Content-Type": "audio/wav"})
            assert status == 404 and "no model with id" in json.loads(raw)["error"]
        request(server, "GET", "/")  # control: the hook sees the server thread's reads
    finally:
        watching.clear()
    assert any(p.endswith("index.html") for p in opened), opened
    assert not [p for p in opened if "passwd" in p or "etc" in Path(p).parts
                or str(models_dir) in p], opened


# -- audio ------------------------------------------------------------------------------
def test_audio_that_is_not_a_wav_is_refused_with_a_hint(server):
    status, body, _ = request(server, "POST", "/api/transcribe", b"ID3\x03 an mp3, really",
                              {"Content-Type": "audio/wav"})
    error = json.loads(body)["error"]
    assert status == 400 and "not a WAV file" in error and "ffmpeg" in error


def test_a_good_wav_without_a_whisper_package_says_how_to_get_one(server):
    status, body, _ = request(server, "POST", "/api/transcribe", wav_bytes(),
                              {"Content-Type": "audio/wav"})
    assert status == 404 and "edgeseq export" in json.loads(body)["error"]


# -- concurrency ------------------------------------------------------------------------
def test_concurrent_requests_share_one_engine_and_match_sequential_answers(server):
    texts = [f"request number {i} has its own words" for i in range(8)]
    loads_before = server.demo.engines.loads

    def ask(text: str) -> str:
        status, events = generate(server, fix(text, threads=1))  # a key no other test uses
        assert status == 200, events
        return events[-1][1]["text"]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, texts))
    assert server.demo.engines.loads == loads_before + 1  # loaded once for all eight
    assert together == [ask(text) for text in texts]



@pytest.mark.parametrize("skip", ["unified-2", "confident"])
def test_layer_skipping_answers_whole_with_layers_per_token(server, skip):
    status, events = generate(server, fix("the cat sat on the mat.", skip=skip))
    assert status == 200 and [name for name, _ in events] == ["done"]
    f = events[0][1]["figures"]
    layers = f["decoder_layers"]  # the embedded default model's, or the test model's
    assert 1 <= f["layers_per_pass"] <= layers
    if skip == "unified-2":
        assert f["layers_per_pass"] == max(1, round(layers / 2))
