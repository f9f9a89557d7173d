"""Speculative decoding: draft -> verify (one decoder pass over pending + k drafts) ->
accept -> sync. Greedy accepts the longest prefix that matches the target's argmax, so
the output is the target's own greedy output; sampling uses rejection sampling
(accept with min(1, p/q), resample from max(p - q, 0)) so outputs follow the target's
distribution. Rejected tokens are rolled back by moving the KV cursor. Batched rows
advance in lockstep by the shortest accepted run (still exact: a shorter accepted
prefix is always a correct one)."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Generator, Iterator

import numpy as np

from .draft_control import DraftController, DraftPlan
from .drafters import Draft, DraftContext, Drafter
from .logits import NgramHistory, ScoreRules, completed_ngram
from .search import DecodeSession, all_done, finish_rows, greedy
from .way_stats import WayStats

# maps raw logits [B, V] of the token after `generated` new tokens (and the rows' histories,
# or None) to probabilities
Sampler = Callable[..., np.ndarray]


@dataclass
class SpecStats:
    drafted: int = 0        # draft tokens verified (never any after a drafted EOS)
    accepted: int = 0
    verify_passes: int = 0
    emitted: int = 0        # tokens the passes emitted, up to the output's end
    histogram: Counter = field(default_factory=Counter)  # accepted drafts per verify pass

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def mean_accepted(self) -> float:
        """Tokens emitted per verify pass (accepted drafts and the target's own token, but
        nothing after the end of the output)."""
        return self.emitted / self.verify_passes if self.verify_passes else 0.0

    def to_json(self) -> dict:
        return {"drafted": self.drafted, "accepted": self.accepted,
                "acceptance_rate": self.acceptance_rate, "verify_passes": self.verify_passes,
                "emitted": self.emitted, "mean_tokens_per_pass": self.mean_accepted,
                "accepted_histogram": {str(k): v for k, v in sorted(self.histogram.items())}}


NO_DRAFT = Draft(np.zeros((1, 0), np.int64))  # read-only: shared by every batch-1 call


def _accept_greedy(logits: np.ndarray, drafts: np.ndarray, rules: ScoreRules,
                   output: list[list[int]], generated: int, done: np.ndarray,
                   seen: NgramHistory | None) -> np.ndarray:
    """The target's tokens [B, n+1] for a verify pass: position by position until the
    first position where an unfinished row's draft differs from the target's choice (the
    batch emits the same count). Later positions are never emitted, so the score rules
    (the n-gram ban walks the sequence) are not computed for them. `seen`: the n-gram
    history of `output` the caller keeps when the rules read one (forked, not rebuilt)."""
    k = drafts.shape[1]
    if len(output) == 1:
        return _accept_greedy_one(logits[0], drafts[0].tolist(), rules, seen, generated)
    history = seen.fork() if seen is not None else None
    targets = []
    for j in range(k + 1):
        targets.append(rules.choose(logits[:, j], generated + j, history))
        if j == k or ((drafts[:, j] != targets[-1]) & ~done).any():
            break
        if history is not None:  # position j's draft is accepted: j+1 sees it
            history.add(drafts[:, j])
    return np.stack(targets, axis=1)


def _accept_greedy_one(logits: np.ndarray, drafts: list[int], rules: ScoreRules,
                      history: NgramHistory | None, generated: int) -> np.ndarray:
    """_accept_greedy for one row, in Python scalars: the raw argmax of a chunk of
    positions at once, the rules in full only where they may change it
    (ScoreRules.choose). The row's history is read, not forked: the accepted drafts
    extend a copy of its sequence, and the n-grams they complete go to a set of their own;
    the history's n-grams are copied at most once, when a rule first needs them all."""
    targets: list[int] = []
    n = history.n if history is not None else 0
    merged = None  # seen | added, made by the first rule that reads the history
    if history is not None:
        history.sync()
        seq, seen, added = list(history.rows[0]), history.seen(0), set()
    biased = rules.biases_copies and history is not None
    for begin in range(0, len(drafts) + 1, VERIFY_CHUNK):
        tops = logits[begin:begin + VERIFY_CHUNK].argmax(axis=-1).tolist()
        for j, top in enumerate(tops, begin):
            if biased:  # the copy bias reads the sequence with drafts 0..j-1 accepted
                top = rules.biased_top(logits[j], top, 0, seq)
            gram = completed_ngram(seq, n, top) if n else None
            if rules.forces_or_bans(top, generated + j) or \
                    (gram is not None and (gram in seen or gram in added)):
                view = None
                if history is not None:
                    merged = seen | added if merged is None else merged
                    view = NgramHistory.viewing(seq, n, merged)
                top = int(rules.choose(logits[None, j], generated + j, view)[0])
                gram = completed_ngram(seq, n, top) if n else None
            targets.append(top)
            if j == len(drafts) or drafts[j] != top:
                return np.array([targets], np.int64)
            if history is not None:
                seq.append(top)
                if gram is not None:
                    added.add(gram)
                    if merged is not None:
                        merged.add(gram)
    return np.array([targets], np.int64)


VERIFY_CHUNK = 16  # positions per argmax call: most passes stop within the first chunk


def _accept_sampled(probs: np.ndarray, draft: Draft, rng: np.random.Generator):
    """Rejection sampling per row. probs [B, k+1, V] target; returns accepted counts and,
    per row, the token to emit at each possible stop position."""
    tokens = draft.tokens
    b, k = tokens.shape
    accepted = np.zeros(b, int)
    rejected = np.zeros(b, bool)
    for r in range(b):
        for j in range(k):
            x = tokens[r, j]
            if x < 0:
                break
            q = draft.probs[r, j, x] if draft.probs is not None else 1.0
            if rng.random() < min(1.0, probs[r, j, x] / q):
                accepted[r] += 1
            else:
                rejected[r] = True
                break
    return accepted, rejected


def _residual_sample(p: np.ndarray, q: np.ndarray | None, x: int, rng) -> int:
    """Sample from max(p - q, 0); a one-hot q removes the rejected token."""
    if q is None:
        q = np.zeros_like(p)
        q[x] = 1.0
    residual = np.maximum(p - q, 0.0)
    total = residual.sum()
    return int(rng.choice(len(p), p=residual / total)) if total > 0 else int(p.argmax())


@dataclass(frozen=True)
class Speculation:
    """How a call speculates: its drafter, the planner (which learns across calls), the
    statistics it adds to, and when sampling, the target's sampler and the seed."""
    drafter: Drafter
    control: DraftController
    stats: SpecStats
    sampler: Sampler | None = None  # None: greedy verification
    seed: int | None = None


@dataclass
class _Call:
    """One speculative call: what its steps read, and its running state."""
    rules: ScoreRules
    pad: int
    source: list[list[int]]        # the encoder's input ids per row
    spec: Speculation              # drafter, planner, statistics, sampler
    output: list[list[int]]        # decoder sequence per row; the pending token last
    done: np.ndarray               # [B] bool: rows past their EOS
    history: NgramHistory | None   # shares `output`'s lists when the rules read n-grams
    rng: np.random.Generator | None  # sampling only
    generated: int = 0


def speculative(s: DecodeSession, start: np.ndarray, rules: ScoreRules, pad: int,
                source: list[list[int]], spec: Speculation) -> Iterator[np.ndarray]:
    """Rounds of draft -> verify -> accept -> sync, each yielding the tokens [B, m] it
    emitted; while the controller keeps drafting off, plain greedy steps instead.
    `source`: each row's encoder input ids (what input drafting copies)."""
    drafter, control, sampler = spec.drafter, spec.control, spec.sampler
    output = [[int(t)] for t in start]
    # plain passes append through this history (it shares `output`'s lists); verify passes
    # append to `output` directly and the history indexes them on its next sync()
    history = NgramHistory(output, rules.no_repeat_ngram, share=True) if rules.reads_history else None
    # greedy verification draws nothing (and a generator costs ~20 us to seed per call)
    call = _Call(rules, pad, source, spec, output, np.zeros(len(start), bool), history,
                 np.random.default_rng(spec.seed) if sampler is not None else None)
    situation = getattr(drafter, "situation", None)
    # the scan pays through the tail, which greedy verification alone reports
    scans = sampler is None and bool(getattr(drafter, "scans_source_first", False))
    # a draft model's one-off start in this call (ModelDrafter.setup_seconds); others have none
    setup_seconds = getattr(drafter, "setup_seconds", None)
    # this call's own drafts per way, for a drafter that names no situation of its own: the
    # planner shrinks them toward the way's figures (DraftController.plan)
    drafts_here: dict[int, WayStats] | None = {} if situation is None else None
    while call.generated < rules.max_new_tokens and not all_done(call.done):
        planned = time.perf_counter()
        plan = _wanted(control, s, call.generated, source,
                       situation(source, output) if situation is not None else None, scans,
                       drafts_here)
        limit = min(rules.max_new_tokens - call.generated - 1, plan.length)
        began = time.perf_counter()
        draft = _draft(call, limit, plan)
        k = draft.tokens.shape[1]
        if k == 0 and sampler is None:  # nothing to verify: plain steps, no extra work
            yield from _plain_round(s, call, control, limit, plan)
            continue
        base = s.cache.length
        drafted_at = time.perf_counter()
        logits = _verify(s, call, draft)
        emit = _accept(logits, draft, call)
        n = emit.shape[1] - 1  # accepted drafts
        emit = _sync(s, call, base, emit, draft, logits)
        # the round's cost: the verify pass and all its bookkeeping, and the planning before
        # the draft (the drafter naming its situation: a round's, not a drafted token's)
        control.observe(k, n, time.perf_counter() - drafted_at + (began - planned),
                        drafted_at - began, plan.way, plan.situation,
                        setup_seconds() if setup_seconds is not None else 0.0)
        if drafts_here is not None:
            if plan.way not in drafts_here:
                drafts_here[plan.way] = WayStats.empty(control.max_draft)
            drafts_here[plan.way].add(k, n)
        yield emit
    control.note_call(call.generated)


def _draft(call: _Call, limit: int, plan: DraftPlan) -> Draft:
    """Up to `limit` drafted tokens per row (-1 pads), cut after a drafted EOS."""
    if limit <= 0:
        return NO_DRAFT if len(call.output) == 1 else Draft(np.zeros((len(call.output), 0), np.int64))
    proposed = call.spec.drafter.propose(DraftContext(call.source, call.output, limit, plan.way))
    return _trim(proposed, call.done, limit, call.rules.eos)


def _plain_round(s: DecodeSession, call: _Call, control: DraftController, limit: int,
                 plan: DraftPlan) -> Generator[np.ndarray, None, None]:
    """Plain greedy steps: one when the drafter found nothing to propose, or as many as
    the controller says while drafting is off (limit <= 0)."""
    if limit > 0:
        control.observe_empty(plan.way)
    passes = control.plain_passes() if limit <= 0 else 1
    ran = yield from _plain_steps(s, call, control, passes)
    if limit <= 0:
        control.ran_plain(ran)
    call.spec.stats.verify_passes += ran
    call.spec.stats.emitted += ran
    call.spec.stats.histogram[0] += ran
    call.generated += ran


def _verify(s: DecodeSession, call: _Call, draft: Draft) -> np.ndarray:
    """One decoder pass over each row's pending token and its drafts: logits [B, k+1, V]."""
    pending = np.array([o[-1] for o in call.output], np.int64)[:, None]
    drafts = np.where(draft.tokens >= 0, draft.tokens, call.pad)
    return s.step(np.concatenate([pending, drafts], axis=1))


def _accept(logits: np.ndarray, draft: Draft, call: _Call) -> np.ndarray:
    """The tokens [B, n+1] a verify pass emits: n accepted drafts and one of the target's."""
    if call.spec.sampler is not None:
        return _accept_sampled_round(logits, draft, call)
    emit = _accept_greedy(logits, draft.tokens, call.rules, call.output, call.generated,
                          call.done, call.history)
    k = draft.tokens.shape[1]
    if emit.shape[1] < k and len(call.output) == 1 and getattr(call.spec.drafter, "wants_tail", False):
        tail = emit.shape[1]  # the model's own choices past the rejected draft
        call.spec.drafter.tail(tail, logits[0, tail:k].argmax(axis=-1).tolist())
    return emit


def _accept_sampled_round(logits: np.ndarray, draft: Draft, call: _Call) -> np.ndarray:
    """Rejection sampling: the accepted drafts (as many as the batch's shortest run) and
    one token after them, from the residual where a row rejected there, else from the
    target. Returns the tokens [B, n+1]."""
    k = draft.tokens.shape[1]
    probs = np.stack([call.spec.sampler(logits[:, j].astype(np.float64), call.generated + j,
                                   _history(call.output, draft.tokens, j, call.rules))
                      for j in range(k + 1)], axis=1)
    accepted, rejected = _accept_sampled(probs, draft, call.rng)
    n = int(accepted[~call.done].min())
    emit = np.empty((len(call.output), n + 1), np.int64)
    emit[:, :n] = draft.tokens[:, :n]
    for r in range(len(call.output)):
        if accepted[r] == n and rejected[r]:
            q = draft.probs[r, n] if draft.probs is not None else None
            emit[r, n] = _residual_sample(probs[r, n], q, int(draft.tokens[r, n]), call.rng)
        else:  # all drafts accepted, or cut short by the batch: a fresh target sample
            emit[r, n] = call.rng.choice(probs.shape[-1], p=probs[r, n])
    return emit


def _sync(s: DecodeSession, call: _Call, base: int, emit: np.ndarray, draft: Draft,
          logits: np.ndarray) -> np.ndarray:
    """After a verify pass: roll the rejected drafts back (the KV cursor keeps pending +
    accepted), finish rows at EOS, record the round and extend the outputs. Returns the
    tokens emitted."""
    k, n = draft.tokens.shape[1], emit.shape[1] - 1
    s.cache.truncate(base + 1 + n)
    emit, finished = _finish(emit, call.done, call.rules.eos, call.pad)
    stats = call.spec.stats
    stats.drafted += k
    stats.accepted += n
    stats.verify_passes += 1
    stats.emitted += emit.shape[1]
    stats.histogram[n] += 1
    call.spec.drafter.update(k, n)
    if s.scores is not None:
        live = ~finished  # positions whose token counts for rerank_source
        first = s.scores.wants_sources(call.generated) and call.spec.sampler is None
        s.scores.add_pass(logits, emit, live, draft.tokens if first else None,
                          call.source if first else None)
    for row, tokens in zip(call.output, emit.tolist()):
        row.extend(tokens)
    call.generated += emit.shape[1]
    return emit


def _finish(emit: np.ndarray, done: np.ndarray, eos: int,
            pad: int) -> tuple[np.ndarray, np.ndarray]:
    """A verify pass's tokens [B, m] once EOS finishes rows (`done` updated): finished
    rows emit pad at every position after their first EOS, and once every row is done the
    output ends at the last row's EOS (an accepted draft, maybe). Also returns which
    positions are finished."""
    if len(done) == 1:  # one unfinished row (the loop runs while one is): no pads
        tokens = emit[0].tolist()
        if eos in tokens:
            done[0] = True
            emit = emit[:, :tokens.index(eos) + 1]
        return emit, np.zeros(emit.shape, bool)
    is_eos = emit == eos
    finished = done[:, None] | ((np.cumsum(is_eos, axis=1) - is_eos) > 0)
    emit[finished] = pad
    done |= is_eos.any(axis=1)
    if done.all():
        width = int((~finished).sum(axis=1).max())
        emit, finished = emit[:, :width], finished[:, :width]
    return emit, finished


def plain_while_off(s: DecodeSession, start: np.ndarray, rules: ScoreRules, pad: int,
                    stats: SpecStats, control: DraftController) -> Iterator[np.ndarray]:
    """A call whose drafting is off (DraftController.off_for_call): plain greedy decoding
    itself, its passes counted toward the next probe."""
    ran = 0
    try:
        for tokens in greedy(s, start, rules, pad):
            ran += 1
            yield tokens
    finally:
        stats.verify_passes += ran
        stats.emitted += ran
        stats.histogram[0] += ran
        control.count_plain(ran)


def _plain_steps(s: DecodeSession, call: _Call, control: DraftController,
                 passes: int) -> Generator[np.ndarray, None, int]:
    """Up to `passes` greedy steps while drafting is off, every 4th timed (the baseline
    cost, bookkeeping included); returns how many ran (call.generated is the caller's to
    advance). As lean as plain greedy's loop: with drafting off, speculation must cost
    nothing."""
    output, history, rules, done = call.output, call.history, call.rules, call.done
    generated, eos, pad = call.generated, call.rules.eos, call.pad
    if history is not None:  # it shares `output`'s lists: one append per token serves both
        history.sync()
    last = np.array([[o[-1]] for o in output], np.int64)
    ran = 0
    while ran < passes and generated + ran < rules.max_new_tokens:
        began = None if ran % 4 else time.perf_counter()
        logits = s.step(last)
        live = None if s.scores is None else ~done  # rows whose token counts for rerank_source
        token = finish_rows(rules.choose(logits[:, -1], generated + ran, history), done, eos, pad)
        if live is not None:
            s.scores.add_pass(logits[:, -1:], token[:, None], live[:, None])
        if history is not None:
            history.add(token)
        else:
            for row, t in zip(output, token.tolist()):
                row.append(t)
        if began is not None:  # a pass and its bookkeeping, as verify rounds are timed
            control.observe_plain(time.perf_counter() - began)
        last = token[:, None]
        ran += 1
        yield last
        if all_done(done):
            break
    return ran


def _wanted(control: DraftController, s: DecodeSession, generated: int,
            source: list[list[int]], situation: int | None, scans: bool,
            drafts_here: dict[int, WayStats] | None = None) -> DraftPlan:
    """The controller's plan; the first pass drafts the sources whole when it can score
    them for rerank_source (it replaces a teacher-forced scoring pass), or, while greedy
    drafting is on, when the drafter scans the source first (scans_source_first: the model's
    choices past a rejected token mark where later drafts will be rejected, and the
    planner, which prices a draft by its accepted tokens alone, drew first drafts too
    short: JFLEG dev, input drafting, 2-3% slower than drafting them whole)."""
    plan = control.plan(situation, drafts_here)
    if (s.scores is not None and s.scores.wants_sources(generated)) or \
            (scans and generated == 0 and plan.length > 0):
        return DraftPlan(plan.way, max(plan.length, max(map(len, source))), plan.situation)
    return plan


def _history(output: list[list[int]], drafts: np.ndarray, j: int,
             rules: ScoreRules) -> list[list[int]] | None:
    """Each row's sequence before verified position j: the output and the first j drafts
    (what the sequence is if those drafts are accepted, the only case position j counts)."""
    if not rules.reads_history:
        return None
    return [out + [int(t) for t in row[:j] if t >= 0] for out, row in zip(output, drafts)]


def _trim(draft: Draft, done: np.ndarray, limit: int, eos: int) -> Draft:
    """Cut drafts to the remaining length and after each row's drafted EOS (nothing after
    it could be emitted), and drop columns no active row uses."""
    if draft.tokens.shape[1] == 0:
        return draft
    if draft.tokens.shape[0] == 1:  # one row pads nothing, and it is not done yet
        row = draft.tokens[0, :limit].tolist()
        width = row.index(eos) + 1 if eos in row else len(row)
        if width == draft.tokens.shape[1]:
            return draft
        return Draft(draft.tokens[:, :width], None if draft.probs is None else draft.probs[:, :width])
    tokens = draft.tokens[:, :limit]
    ends = tokens == eos
    if ends.any():
        tokens = np.where((np.cumsum(ends, axis=1) - ends) > 0, -1, tokens)
    active = tokens[~done] if (~done).any() else tokens[:0]
    width = int((active >= 0).sum(axis=1).max()) if active.size else 0
    probs = draft.probs[:, :width] if draft.probs is not None else None
    return Draft(tokens[:, :width], probs)
