"""`edgeseq demo --tui` driven by scripted input: answers stream, figures follow, errors
are reported and the session goes on."""
from __future__ import annotations

import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # mobile_demo/ is not an installed package
    sys.path.insert(0, str(ROOT))

from mobile_demo.tui import run  # noqa: E402
from test_demo_server import MODEL_ID, demo_models  # noqa: E402


def test_terminal_session(tmp_path_factory, t5_tokenizer_file, tmp_path):
    models = demo_models(tmp_path_factory, t5_tokenizer_file)
    not_wav = tmp_path / "speech.mp3"
    not_wav.write_bytes(b"ID3 not a wav")
    lines = iter(["She go to school.", ":set max_new_tokens 8", ":set drafter input",
                  "She go to school.", ":set temperature -1", ":profile pi5", "",
                  f":transcribe {not_wav}", ":gen ../../etc", f":gen {MODEL_ID}",
                  ":set drafter auto", "hello",
                  ":settings", ":nope", ":quit", "never read"])
    prompts: list[str] = []

    def read(prompt: str) -> str:
        prompts.append(prompt)
        return next(lines)
    out = io.StringIO()
    assert run(models, read=read, out=out) == 0
    text = out.getvalue()
    assert "fixing text with:" in text and "transcribing with: nothing" in text
    assert text.count("first token") == 3 and "pieces (timed from the stream)" in text
    assert "changes (" in text and "speculation: " in text and "accepted per pass" in text
    assert "error: temperature must be a number" in text
    assert "pi5: 4 threads, budget 3000 MB" in text and "of a 3000 MB budget" in text
    assert "not a WAV file" in text and "no model with id '../../etc'" in text
    assert '"max_new_tokens": 8' in text and "unknown command" in text
    assert prompts[-1] == f"gen {MODEL_ID}> " and len(prompts) == 15
