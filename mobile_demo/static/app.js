// edgeseq offline assistant: the page's behaviour. No libraries, no network beyond this
// server. Text answers arrive as Server-Sent Events over a POST (fetch + a stream reader).
"use strict";

const $ = (id) => document.getElementById(id);
const page = { limits: { max_text_chars: 2000, max_audio_bytes: 10 << 20 }, profiles: {}, audio: null };

// ---------------------------------------------------------------- small helpers
function showError(el, message) {
  el.textContent = message || "";
  el.hidden = !message;
}

function setBusy(button, busy, label) {
  button.disabled = busy;
  if (label) button.textContent = busy ? "Working…" : label;
}

async function errorOf(response) {
  try {
    return (await response.json()).error || `HTTP ${response.status}`;
  } catch (_) {
    return `HTTP ${response.status} ${response.statusText}`;
  }
}

// ---------------------------------------------------------------- tabs
function selectTab(name) {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const on = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", String(on));
    $(tab.getAttribute("aria-controls")).hidden = !on;
  }
}

// ---------------------------------------------------------------- models and config
async function loadModels() {
  const response = await fetch("/api/models");
  if (!response.ok) {
    $("status").textContent = `Cannot list the models: ${await errorOf(response)}`;
    return;
  }
  const info = await response.json();
  page.limits = info.limits;
  page.profiles = info.profiles;
  $("threads").max = info.max_threads;
  $("threads").title = `this machine has ${info.cpu_count} cores`;
  for (const [name, p] of Object.entries(info.profiles)) {
    $("profile").append(new Option(`${name} — ${p.threads || "all"} threads, ${p.memory_budget_mb ? p.memory_budget_mb + " MB" : "no budget"}`, name));
  }
  const notes = [];
  if (info.default_missing) {
    notes.push(info.fix_model
      ? `The embedded default model is missing; Fix my text uses “${info.fix_model}” from the models folder.`
      : "The embedded default model is missing and the models folder holds no text model: export one with `edgeseq export CHECKPOINT models/NAME`.");
  }
  if (info.problems.length) notes.push(`Skipped: ${info.problems.join("; ")}`);
  $("status").textContent = notes.join(" ") || `${info.models.length} model(s) ready.`;
  $("fix-model").textContent = info.fix_model ? `model: ${info.fix_model}` : "";
  $("fix-run").disabled = !info.fix_model;

  $("whisper-note").textContent = info.whisper_model
    ? `Transcribing with “${info.whisper_model}”. Upload a WAV file or record with the microphone.`
    : `No Whisper model yet: ${info.whisper_hint}. Audio you send is still checked.`;

  const select = $("any-model");
  select.replaceChildren();
  for (const m of info.models) {
    const option = new Option(`${m.id} (${m.family}, ${m.quant}, ${m.size_mb} MB)`, m.id);
    option.disabled = m.kind !== "text";
    if (option.disabled) option.textContent += m.kind === "speech" ? " — use Transcribe" : " — ids-only";
    select.append(option);
  }
  const firstText = info.models.find((m) => m.kind === "text");
  if (firstText) select.value = firstText.id;
  $("any-run").disabled = !firstText;
}

// ---------------------------------------------------------------- controls
function settings() {
  const number = (id) => Number($(id).value);
  const out = {
    decoding: $("decoding").value,
    drafter: $("drafter").value,
    skip: $("skip").value,
    threads: number("threads"),
    max_new_tokens: number("max-new"),
    memory_budget_mb: $("budget").value === "" ? null : number("budget"),
    copy_bias: $("copy-bias").value === "" ? null : number("copy-bias"),
  };
  if (out.decoding === "sample") Object.assign(out, { temperature: number("temperature"), top_p: number("top-p") });
  if (out.decoding === "beam") out.num_beams = number("num-beams");
  return out;
}

function updateControls() {
  const decoding = $("decoding").value;
  for (const el of document.querySelectorAll(".sample-only")) el.hidden = decoding !== "sample";
  for (const el of document.querySelectorAll(".beam-only")) el.hidden = decoding !== "beam";
  const drafter = $("drafter");
  drafter.disabled = decoding === "beam";  // speculation verifies one sequence, not beams
  if (drafter.disabled) drafter.value = "none";
  const skip = $("skip");
  // lossless and lossy skipping don't mix ("auto" drafts only while no layers are skipped)
  if (drafter.value !== "none" && drafter.value !== "auto") skip.value = "none";
  skip.disabled = drafter.value !== "none" && drafter.value !== "auto";
  // as the server resolves "auto" (Settings.for_task): input drafting for greedy fixes
  const autoInput = drafter.value === "auto" && decoding === "greedy" && skip.value === "none";
  const noDrafter = drafter.value === "none" || (drafter.value === "auto" && !autoInput);
  const streams = decoding !== "beam" && noDrafter && skip.value === "none";
  $("stream-note").textContent = autoInput
    ? "Fix my text drafts from your input (the same answer, sooner) and answers whole; free generation streams."
    : streams
      ? "Answers stream token by token (an editing model that keeps inputs it prefers answers whole)."
      : "Beam search and drafters answer whole: the text arrives at once, with the speculation figures.";
}

function applyProfile() {
  const p = page.profiles[$("profile").value];
  if (!p) return;
  $("threads").value = p.threads;
  $("budget").value = p.memory_budget_mb ?? "";
  $("profile-note").textContent = `${p.description}. Mimicked by thread count and memory budget only.`;
}

// ---------------------------------------------------------------- text answers (SSE)
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      let data = "";
      for (const line of frame.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      onEvent(name, JSON.parse(data));
    }
  }
}

async function runText({ task, input, output, error, button, label, model }) {
  const text = input.value;
  showError(error, "");
  if (!text.trim()) return showError(error, "Type some text first.");
  if (text.length > page.limits.max_text_chars) {
    return showError(error, `The text has ${text.length} characters; the demo takes at most ${page.limits.max_text_chars}.`);
  }
  output.textContent = "";
  output.dataset.pieces = "0";
  output.classList.add("pending");
  setBusy(button, true, label);
  try {
    const response = await fetch("/api/generate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ task, text, model, settings: settings() }),
    });
    if (!response.ok) return showError(error, await errorOf(response));
    await readEvents(response, (name, data) => {
      if (name === "piece") {
        output.append(data.text);
        output.dataset.pieces = String(Number(output.dataset.pieces) + 1);
      } else if (name === "done") {
        if (data.changes) renderChanges(output, data.changes);
        else output.textContent = data.text;
        output.dataset.streamed = String(data.streamed);
        showFigures(data.figures);
      } else if (name === "error") {
        showError(error, data.error);
      }
    });
  } catch (err) {
    showError(error, `The demo server did not answer: ${err.message}`);
  } finally {
    output.classList.remove("pending");
    setBusy(button, false, label);
  }
}

function renderChanges(output, changes) {
  output.replaceChildren();
  const words = (tag, text, cls) => {
    const el = document.createElement(tag);
    el.textContent = text;
    if (cls) el.className = cls;
    return el;
  };
  changes.forEach((c, i) => {
    if (i > 0) output.append(" ");
    if (c.op === "equal") output.append(c.before);
    else if (c.op === "delete") output.append(words("del", c.before));
    else if (c.op === "insert") output.append(words("ins", c.after));
    else {
      const span = words("span", "", "replace");
      span.append(words("del", c.before), " ", words("ins", c.after));
      output.append(span);
    }
  });
  if (!changes.some((c) => c.op !== "equal")) output.append(words("span", "  (no changes)", "note"));
}

// ---------------------------------------------------------------- figures
function showFigures(f) {
  const set = (key, text) => { document.querySelector(`[data-figure=${key}]`).textContent = text; };
  const unit = f.timed_by === "stream" ? "pieces" : "tokens";
  set("first_token_ms", f.first_token_ms == null ? "— (beam search answers whole)" : `${f.first_token_ms.toFixed(0)} ms`);
  set("tokens_per_s", `${f.tokens_per_s.toFixed(1)} ${unit}/s`);
  set("tokens", `${f.tokens} ${unit}`);
  set("total_ms", `${f.total_ms.toFixed(0)} ms`);
  set("decoder_passes", f.decoder_passes == null ? "—" : String(f.decoder_passes));
  const s = f.speculation;
  set("acceptance", s
    ? `${(100 * s.acceptance_rate).toFixed(0)}% (${s.accepted}/${s.drafted}), ${s.mean_tokens_per_pass.toFixed(2)} tokens/pass`
    : "— (no drafter)");
  set("layers_per_pass", f.layers_per_pass == null ? "— (all layers)" : `${f.layers_per_pass.toFixed(2)} of ${f.decoder_layers} per token`);
  showMemory(f.memory, set);
  showHistogram(s ? s.accepted_histogram : null);
  const rtf = f.real_time_factor == null ? "" : ` Audio ${f.audio_s.toFixed(1)} s at ${f.real_time_factor.toFixed(1)}× real time.`;
  $("timed-by").textContent = (f.timed_by === "stream"
    ? "Timed by the demo from the stream: one piece per token that adds text."
    : "From the engine's generation statistics.") + ` Threads: ${f.threads || "all"}.` + rtf;
}

function showMemory(m, set) {
  if (m.rss_mb == null) {
    set("memory", "— (no /proc on this system)");
    $("memory-fill").style.width = "0";
    return;
  }
  const planned = m.planned_mb ? `; plan ${m.planned_mb.toFixed(0)} MB` : "";
  const reduced = m.reduced && m.reduced.length ? `; reduced ${m.reduced.join(", ")}` : "";
  set("memory", m.budget_mb
    ? `${m.rss_mb.toFixed(0)} of ${m.budget_mb.toFixed(0)} MB budget (process RSS${planned}${reduced})`
    : `${m.rss_mb.toFixed(0)} MB process RSS (no budget)`);
  const share = m.budget_mb ? Math.min(1, m.rss_mb / m.budget_mb) : 0;
  $("memory-fill").style.width = `${(100 * share).toFixed(1)}%`;
  $("memory-fill").classList.toggle("over", Boolean(m.budget_mb) && m.rss_mb > m.budget_mb);
}

function showHistogram(histogram) {
  const box = $("histogram");
  box.replaceChildren();
  if (!histogram || !Object.keys(histogram).length) {
    const note = document.createElement("p");
    note.className = "note";
    note.textContent = "on when a drafter is chosen";
    return box.append(note);
  }
  const most = Math.max(...Object.values(histogram));
  for (const [accepted, passes] of Object.entries(histogram)) {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.title = `${passes} verify pass(es) accepted ${accepted} draft token(s)`;
    const fill = document.createElement("span");
    fill.style.height = `${(100 * passes / most).toFixed(0)}%`;
    const label = document.createElement("small");
    label.textContent = accepted;
    bar.append(fill, label);
    box.append(bar);
  }
}

// ---------------------------------------------------------------- audio
function setAudio(blob, name) {
  page.audio = blob;
  $("audio-name").textContent = `${name}, ${(blob.size / 1024).toFixed(0)} KB`;
  $("transcribe-run").disabled = false;
}

function encodeWav(samples, rate) {  // mono 16-bit PCM
  const view = new DataView(new ArrayBuffer(44 + 2 * samples.length));
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * samples.length, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, 2 * samples.length, true);
  samples.forEach((x, i) => {
    const s = Math.max(-1, Math.min(1, x));
    view.setInt16(44 + 2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  });
  return new Blob([view.buffer], { type: "audio/wav" });
}

async function toWav16k(blob) {  // whatever MediaRecorder made -> 16 kHz mono WAV
  const context = new AudioContext();
  const decoded = await context.decodeAudioData(await blob.arrayBuffer());
  await context.close();
  const offline = new OfflineAudioContext(1, Math.max(1, Math.ceil(decoded.duration * 16000)), 16000);
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  return encodeWav((await offline.startRendering()).getChannelData(0), 16000);
}

let recorder = null;
async function toggleRecording() {
  const error = $("transcribe-error");
  showError(error, "");
  if (recorder) return recorder.stop();
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    return showError(error, "This browser gives no microphone here (it needs localhost or https); upload a WAV file instead.");
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    return showError(error, `No microphone: ${err.message}`);
  }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    const type = recorder.mimeType;
    recorder = null;
    $("record").textContent = "● Record";
    $("record-status").textContent = "converting to WAV…";
    try {
      setAudio(await toWav16k(new Blob(chunks, { type })), "recording.wav");
      $("record-status").textContent = "";
    } catch (err) {
      $("record-status").textContent = "";
      showError(error, `Could not convert the recording: ${err.message}`);
    }
  };
  recorder.start();
  $("record").textContent = "■ Stop";
  $("record-status").textContent = "recording…";
}

async function transcribe() {
  const error = $("transcribe-error");
  showError(error, "");
  if (!page.audio) return showError(error, "Choose a WAV file or record first.");
  if (page.audio.size > page.limits.max_audio_bytes) {
    return showError(error, `The audio is ${(page.audio.size / 1048576).toFixed(1)} MB; the demo takes at most ${(page.limits.max_audio_bytes / 1048576).toFixed(0)} MB.`);
  }
  const button = $("transcribe-run");
  setBusy(button, true, "Transcribe");
  $("transcript").textContent = "";
  $("segments").replaceChildren();
  try {
    const response = await fetch(`/api/transcribe?threads=${Number($("threads").value)}`, {
      method: "POST", headers: { "Content-Type": "audio/wav" }, body: page.audio,
    });
    if (!response.ok) return showError(error, await errorOf(response));
    const result = await response.json();
    $("transcript").textContent = result.text;
    for (const s of result.segments) {
      const item = document.createElement("li");
      item.textContent = `[${s.start.toFixed(1)}–${s.end.toFixed(1)} s] ${s.text.trim()}`;
      $("segments").append(item);
    }
    showFigures(result.figures);
  } catch (err) {
    showError(error, `The demo server did not answer: ${err.message}`);
  } finally {
    setBusy(button, false, "Transcribe");
  }
}

// ---------------------------------------------------------------- wiring
function counter(input, count) {
  input.addEventListener("input", () => {
    count.textContent = `${input.value.length} / ${page.limits.max_text_chars}`;
  });
}

function main() {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => selectTab(tab.id.slice(4)));
  }
  $("decoding").addEventListener("change", updateControls);
  $("drafter").addEventListener("change", updateControls);
  $("skip").addEventListener("change", updateControls);
  $("profile").addEventListener("change", applyProfile);
  for (const id of ["threads", "budget"]) $(id).addEventListener("input", () => { $("profile").value = ""; });
  counter($("fix-input"), $("fix-count"));
  counter($("any-input"), $("any-count"));
  $("fix-run").addEventListener("click", () => runText({
    task: "fix", input: $("fix-input"), output: $("fix-output"), error: $("fix-error"),
    button: $("fix-run"), label: "Fix my text", model: null,
  }));
  $("any-run").addEventListener("click", () => runText({
    task: "generate", input: $("any-input"), output: $("any-output"), error: $("any-error"),
    button: $("any-run"), label: "Generate", model: $("any-model").value,
  }));
  $("audio-file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) setAudio(file, file.name);
  });
  $("record").addEventListener("click", toggleRecording);
  $("transcribe-run").addEventListener("click", transcribe);
  updateControls();
  loadModels().catch((err) => { $("status").textContent = `Cannot reach the demo server: ${err.message}`; });
}

main();
