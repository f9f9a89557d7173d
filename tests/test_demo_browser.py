"""The demo page end to end in a real headless Chromium (Debian's `chromium` package,
driven by Playwright's Python package; no browser is downloaded): fix a sentence, see
the pieces stream in and the figures fill, then speculation figures and an audio error."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # mobile_demo/ is not an installed package
    sys.path.insert(0, str(ROOT))

from test_demo_server import demo_models, start_server  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run",
                 # a synthetic microphone (a beep), allowed without a prompt
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser at {CHROMIUM}: apt-get install -y chromium")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright Python package is not installed "
        "(pip install playwright; its own browser download is not needed)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def expect():
    # locator assertions run in Playwright's isolated world: unlike wait_for_function,
    # they work under the page's Content-Security-Policy (no eval)
    return pytest.importorskip("playwright.sync_api").expect


@pytest.fixture(scope="module")
def server(tmp_path_factory, t5_tokenizer_file):
    server = start_server(demo_models(tmp_path_factory, t5_tokenizer_file))
    yield server
    server.shutdown()
    server.server_close()


def figure(page, name: str) -> str:
    return page.inner_text(f"[data-figure={name}]")


def test_fix_my_text_drafts_free_generation_streams_and_figures_fill(browser, expect, server, tmp_path):
    page = browser.new_page(viewport={"width": 1200, "height": 860})
    problems: list[str] = []  # script errors and CSP violations (anything fetched offsite)
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.on("console", lambda msg: msg.type == "error" and problems.append(msg.text))
    expected = "the server responded with a status of 400"  # the refused audio, below
    page.goto(server.url)
    expect(page.locator("#fix-model")).to_have_text(re.compile("^model: "))

    page.fill("#fix-input", "She go to school every days.")
    page.fill("#max-new", "16")
    assert "drafts from your input" in page.inner_text("#stream-note")  # drafter "auto"
    page.click("#fix-run")
    expect(page.locator("[data-figure=acceptance]")).to_contain_text("%", timeout=20_000)
    output = page.locator("#fix-output")
    assert output.get_attribute("data-streamed") == "false" and output.inner_text().strip()
    marked = page.locator("#fix-output ins, #fix-output del").count()
    assert marked >= 1 or "(no changes)" in output.inner_text()  # changes, or says none
    assert page.locator("#histogram .bar").count() >= 1
    assert figure(page, "first_token_ms").endswith(" ms")
    assert figure(page, "tokens_per_s").endswith("tokens/s")
    assert "MB" in figure(page, "memory")
    page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)

    page.click("#tab-any")  # free generation streams under "auto"
    page.select_option("#any-model", "tiny-t5")
    page.fill("#any-input", "hello")
    page.click("#any-run")
    expect(page.locator("[data-figure=tokens_per_s]")).to_contain_text("pieces/s", timeout=20_000)
    any_output = page.locator("#any-output")
    assert int(any_output.get_attribute("data-pieces")) >= 1  # pieces arrived one by one
    assert any_output.get_attribute("data-streamed") == "true"
    page.click("#tab-fix")

    page.fill("#fix-input", "She go to school every days and she like it.")
    page.select_option("#copy-bias", "20")  # keeps every word: the output is the input
    page.click("#fix-run")
    expect(output).to_contain_text("(no changes)", timeout=20_000)
    assert page.locator("#fix-error").is_hidden()

    page.click("#tab-transcribe")
    assert "edgeseq export" in page.inner_text("#whisper-note")
    page.set_input_files("#audio-file", files=[{"name": "talk.mp3", "mimeType": "audio/mpeg",
                                                "buffer": b"ID3 not a wav"}])
    page.click("#transcribe-run")
    page.wait_for_selector("#transcribe-error:not([hidden])")
    assert "not a WAV file" in page.inner_text("#transcribe-error")
    assert [p for p in problems if expected not in p] == []
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_a_recording_is_encoded_as_a_wav_the_server_accepts(browser, expect, server):
    page = browser.new_page()
    page.goto(server.url)
    page.click("#tab-transcribe")
    page.click("#record")
    expect(page.locator("#record")).to_have_text("■ Stop")
    page.wait_for_timeout(700)
    page.click("#record")
    expect(page.locator("#audio-name")).to_contain_text("recording.wav", timeout=10_000)
    page.click("#transcribe-run")
    error = page.locator("#transcribe-error")
    # the server decodes the audio before it looks for a model: reaching "no Whisper
    # package" means the page's MediaRecorder -> 16-bit PCM WAV conversion was accepted
    expect(error).to_contain_text("no Whisper package", timeout=10_000)
