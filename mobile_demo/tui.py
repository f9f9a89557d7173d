"""`edgeseq demo --tui`: the demo's tasks in a plain terminal, for headless devices.
Type text to fix it; commands start with a colon (:help). Answers stream as they decode
and the same figures as the web page follow each one."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, TextIO

from edgeseq.errors import EdgeseqError
from edgeseq.runtime.audio import AudioError

from .diffing import changed_words, marked
from .figures import Figures
from .inputs import AudioJob, Task, TextJob, check_text, parse_settings
from edgeseq.profiles import PROFILES
from .service import Demo
from .tasks import Answer, Piece

HELP = """\
  TEXT                 fix TEXT (or, after :gen MODEL, generate from it)
  :fix                 back to fixing text with the grammar model
  :gen MODEL           free generation with MODEL (see :models)
  :transcribe PATH     transcribe a WAV file with the first Whisper package
  :models              list the models
  :set NAME VALUE      decoding greedy|sample|beam, temperature, top_p, num_beams,
                       drafter auto|none|input|ngram|layers (auto: input when fixing),
                       copy_bias (none: the model's),
                       threads, memory_budget_mb (none), max_new_tokens
  :profile NAME        threads and memory budget of a device: """ + ", ".join(PROFILES) + """
  :settings            show the settings
  :quit                leave (or Ctrl-D)"""


def format_figures(f: Figures) -> str:
    """The figures panel as terminal lines."""
    unit = "tokens" if f.timed_by == "engine" else "pieces (timed from the stream)"
    first = "beam search: no first token" if f.first_token_ms is None else \
        f"first token {f.first_token_ms:.0f} ms"
    lines = [f"{first} | {f.tokens_per_s:.1f} {unit.split()[0]}/s | "
             f"{f.tokens} {unit} in {f.total_ms:.0f} ms | threads {f.threads or 'all'}"]
    if f.speculation:
        s = f.speculation
        hist = " ".join(f"{k}:{v}" for k, v in s.get("accepted_histogram", {}).items())
        lines.append(f"speculation: {s['accepted']}/{s['drafted']} drafts accepted "
                     f"({s['acceptance_rate']:.0%}), {s['mean_tokens_per_pass']:.2f} tokens per "
                     f"verify pass; accepted per pass {hist}")
    if f.layers_per_pass is not None:
        lines.append(f"layers per pass: {f.layers_per_pass:.2f} of {f.decoder_layers}")
    if f.real_time_factor is not None:
        lines.append(f"audio {f.audio_s:.1f} s at {f.real_time_factor:.1f}x real time")
    m = f.memory
    if m.rss_mb is not None:
        budget = f" of a {m.budget_mb:.0f} MB budget" if m.budget_mb else " (no budget)"
        planned = f"; plan predicts {m.planned_mb:.0f} MB" if m.planned_mb else ""
        reduced = f"; reduced {', '.join(m.reduced)}" if m.reduced else ""
        lines.append(f"memory: process RSS {m.rss_mb:.0f} MB{budget}{planned}{reduced}")
    return "\n".join(lines)


def _value(text: str) -> object:
    """A setting value typed in the terminal: a JSON number, none / off, or a bare word."""
    if text.lower() in ("none", "off", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class Terminal:
    def __init__(self, demo: Demo, out: TextIO):
        self.demo, self.out = demo, out
        self.settings: dict[str, object] = {}
        self.model: str | None = None   # None: fix text with the grammar model
        self.color = out.isatty()

    def say(self, text: str = "", end: str = "\n") -> None:
        print(text, end=end, file=self.out, flush=True)

    def prompt(self) -> str:
        return f"gen {self.model}> " if self.model else "fix> "

    def welcome(self) -> None:
        self.show_models()
        self.say("Type a sentence to fix it, or :help.")

    def show_models(self) -> None:
        catalog = self.demo.catalog
        listing = catalog.refresh()
        if listing.default_missing:
            self.say("The embedded default model is missing in this install.")
        for entry in listing.entries.values():
            self.say(f"  {entry.id}: {entry.family}, {entry.quant}, {entry.size_mb:.1f} MB")
        for problem in listing.problems:
            self.say(f"  note: {problem}")
        fix, whisper = catalog.fix_model(), catalog.whisper_model()
        self.say(f"fixing text with: {fix.id if fix else 'nothing (no text model)'}; "
                 f"transcribing with: {whisper.id if whisper else 'nothing'}")

    def handle(self, line: str) -> bool:
        """One line of input; False to leave."""
        line = line.strip()
        if not line:
            return True
        if not line.startswith(":"):
            self.answer(line)
            return True
        command, _, rest = line[1:].partition(" ")
        rest = rest.strip()
        if command in ("quit", "q", "exit"):
            return False
        if command == "help":
            self.say(HELP)
        elif command == "models":
            self.show_models()
        elif command == "fix":
            self.model = None
        elif command == "gen":
            self.model = self.demo.catalog.for_text(rest).id
        elif command == "transcribe":
            self.transcribe(rest)
        elif command == "set" and len(rest.split()) == 2:
            self.set(*rest.split())
        elif command == "profile":
            self.profile(rest)
        elif command == "settings":
            self.say(json.dumps(parse_settings(self.settings).to_json()))
        else:
            self.say(f"unknown command or arguments: {line}; :help lists them")
        return True

    def set(self, name: str, value: str) -> None:
        trial = {**self.settings, name: _value(value)}
        parse_settings(trial)  # refuse a bad value now, not at the next answer
        self.settings = trial

    def profile(self, name: str) -> None:
        if name not in PROFILES:
            self.say(f"profiles: {', '.join(PROFILES)}")
            return
        p = PROFILES[name]
        self.settings = {**self.settings, "threads": p.threads,
                         "memory_budget_mb": p.memory_budget_mb}
        budget = f"{p.memory_budget_mb:.0f} MB" if p.memory_budget_mb else "none"
        self.say(f"{p.name}: {p.threads} threads, budget {budget} ({p.description})")

    def answer(self, text: str) -> None:
        task = Task.GENERATE if self.model else Task.FIX
        job = TextJob(task, check_text(text, self.demo.limits), self.model,
                      parse_settings(self.settings))
        for event in self.demo.answer(job):
            if isinstance(event, Piece):
                self.say(event.text, end="")
            elif isinstance(event, Answer):
                self.say("" if event.streamed else event.text)
                if event.changes is not None:
                    self.say(f"changes ({changed_words(event.changes)} words): "
                             f"{marked(event.changes, self.color)}")
                self.say(format_figures(event.figures))

    def transcribe(self, path: str) -> None:
        if not path:
            self.say("usage: :transcribe PATH.wav")
            return
        threads = parse_settings(self.settings).threads
        result = self.demo.transcribe(Path(path).expanduser(), AudioJob(None, threads))
        self.say(result.text)
        for s in result.segments:
            self.say(f"  [{s['start']:6.2f} -> {s['end']:6.2f}] {s['text'].strip()}")
        self.say(format_figures(result.figures))


def run(models_dir: Path | None, read: Callable[[str], str] = input,
        out: TextIO = sys.stdout) -> int:
    """The interactive loop; `read` and `out` are replaceable for tests."""
    terminal = Terminal(Demo.open(models_dir), out)
    terminal.welcome()
    while True:
        try:
            line = read(terminal.prompt())
        except EOFError:
            terminal.say()
            return 0
        try:
            if not terminal.handle(line):
                return 0
        except (EdgeseqError, AudioError, OSError) as err:
            terminal.say(f"\nerror: {err}")
        except KeyboardInterrupt:
            terminal.say("\n(stopped)")
