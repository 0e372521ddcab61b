"""What the language server computes for a unit: the policy (loaded and run in its own thread),
the analysis of a unit and the policy's ranking of its candidates (the offers made from them live
in :mod:`trustfix.server.offers`)."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustfix.trainer.events import candidate_text as policy_candidate_text

from .findings import AnalysisConfig, Finding, SemgrepCache, ruff_findings
from .proposers import Candidate, common_lines, propose
from .repairs import DEFAULT_BUDGET, CandidateBudget
from .state import state_text
from .units import Unit, units

log = logging.getLogger(__name__)

POLICY_CACHE = 1024
"""Policy answers kept (see :attr:`PolicyHost.outputs`)."""


def candidate_text(candidate: Candidate) -> str:
    """What the policy reads of ``candidate`` (:func:`trustfix.trainer.events.candidate_text`)."""
    return policy_candidate_text(candidate.title, candidate.diff)


class PolicyHost:
    """The ranking policy, owned by one dedicated thread (never pygls' shared pool).

    :meth:`start` loads the newest checkpoint of ``checkpoints`` in that thread (torch is imported
    there, not at server start); without one ``initial_policy`` (the shipped pretrained ranker,
    or with ``pretrain.start`` = fresh a fresh one with seed 0).  Before each ranking, at most
    every ``poll_s`` seconds, the folder is checked and a newer version loaded.
    ``on_change(version, fresh)`` is called from the model thread whenever the policy changes.
    """

    def __init__(
        self,
        checkpoints: Path,
        poll_s: float,
        on_change: Callable[[int | None, bool], None] | None = None,
    ) -> None:
        self.checkpoints = checkpoints
        self.poll_s = poll_s
        self.on_change = on_change
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trustfix-model")
        self.policy: Any = None
        self.version: int | None = None
        self.outputs: OrderedDict[tuple[int | None, bytes], tuple[float, ...]] = OrderedDict()
        """The policy's answers by (version, state and candidate texts): an edit elsewhere in
        the file leaves a function's state and candidates as they were."""
        self._cached_policy: Any = None
        self._polled = 0.0
        from trustfix.trainer.config import load_config

        self.start_policy = load_config().pretrain.start
        """What ranks before any checkpoint: ``pretrained`` or ``fresh``."""

    def start(self) -> Future[None]:
        """Load the policy in the model thread."""
        return self.executor.submit(self._ensure)

    def check_now(self) -> Future[None]:
        """Look for a newer version now (a new one was installed), not at the next ranking."""

        def check() -> None:
            self._polled = -float("inf")
            self._ensure()

        return self.executor.submit(check)

    def _load(self, version: int | None) -> None:
        import torch
        from trustfix.trainer.policies import CheckpointError, initial_policy, load_checkpoint

        torch.set_num_threads(min(2, torch.get_num_threads()))
        if version is not None:
            try:
                policy, info = load_checkpoint(self.checkpoints, version)
            except (CheckpointError, OSError, ValueError, KeyError) as error:
                log.warning("checkpoint v%s in %s not loaded: %s", version, self.checkpoints, error)
            else:
                self.policy, self.version = policy, info.version
                log.info("policy v%d loaded from %s", info.version, self.checkpoints)
                if self.on_change:
                    self.on_change(self.version, False)
                return
        if self.policy is None:
            torch.manual_seed(0)
            self.policy = initial_policy(start=self.start_policy).eval()
            self.version = None
            if self.on_change:
                self.on_change(None, self.start_policy == "fresh")

    def _ensure(self) -> None:
        now = time.monotonic()
        if self.policy is not None and now - self._polled < self.poll_s:
            return
        self._polled = now
        from trustfix.trainer.policies import latest_version

        newest = latest_version(self.checkpoints)
        if self.policy is None or (newest is not None and newest != self.version):
            self._load(newest)

    def _rank(self, state: str, texts: list[str]) -> tuple[list[float], int | None]:
        import torch

        self._ensure()
        key = (self.version, hashlib.sha256("\0".join([state, *texts]).encode()).digest())
        hit = self.outputs.get(key)
        if hit is not None and self.policy is self._cached_policy:
            self.outputs.move_to_end(key)
            return list(hit), self.version
        with torch.inference_mode():
            out = self.policy([state], [texts])
        log_probs = [float(x) for x in out.log_probs[0, : 1 + len(texts)]]
        if self.policy is not self._cached_policy:
            self.outputs.clear()
            self._cached_policy = self.policy
        self.outputs[key] = tuple(log_probs)
        while len(self.outputs) > POLICY_CACHE:
            self.outputs.popitem(last=False)
        return log_probs, self.version

    def rank(self, state: str, texts: list[str]) -> Future[tuple[list[float], int | None]]:
        """Log-probs over ``[STOP, *texts]`` and the policy version, computed in the model thread."""
        return self.executor.submit(self._rank, state, texts)

    def close(self) -> None:
        """Stop the model thread."""
        self.executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class Ranking:
    """One unit's candidates as the policy ranked them."""

    unit: Unit
    state: str
    findings: tuple[Finding, ...]
    candidates: tuple[Candidate, ...]
    log_probs: tuple[float, ...]
    """Over ``[STOP, *candidates]``."""
    policy_version: int | None

    @property
    def order(self) -> list[int]:
        """Candidate indices, most probable first."""
        return sorted(range(len(self.candidates)), key=lambda i: -self.log_probs[i + 1])

    def prob(self, index: int) -> float:
        """Probability of candidate ``index``."""
        return math.exp(self.log_probs[index + 1])

    @property
    def stop_prob(self) -> float:
        """Probability of STOP (leave the unit as it is)."""
        return math.exp(self.log_probs[0])


def analyse(
    source: str,
    unit: Unit,
    filename: str,
    semgrep: SemgrepCache | None,
    max_candidates: int,
    config: AnalysisConfig | None = None,
    budget: CandidateBudget = DEFAULT_BUDGET,
) -> tuple[tuple[Finding, ...], tuple[Candidate, ...], str]:
    """Findings (ruff now, semgrep when already cached), candidates (``max_candidates`` shared out
    by ``budget``) and the policy's state text for ``unit`` of ``source``."""
    config = config or AnalysisConfig()
    findings = ruff_findings(source, filename, config)
    if semgrep is not None:
        findings += semgrep.get(source) or []
    candidates = propose(
        source,
        unit,
        findings=findings,
        semgrep=semgrep,
        cap=max_candidates,
        filename=filename,
        config=config,
        budget=budget,
    )
    return tuple(findings), tuple(candidates), state_text(unit, findings)


def make_ranking(
    unit: Unit,
    analysed: tuple[tuple[Finding, ...], tuple[Candidate, ...], str],
    ranked: tuple[list[float], int | None] | None,
) -> Ranking:
    """A :class:`Ranking` from :func:`analyse`'s output and :meth:`PolicyHost.rank`'s (None when
    there were no candidates to rank)."""
    findings, candidates, state = analysed
    log_probs, version = ranked if ranked is not None else ([0.0], None)
    return Ranking(unit, state, findings, candidates, tuple(log_probs), version)


def find_unit(source: str, qualname: str, near_line: int) -> Unit | None:
    """The unit called ``qualname`` whose first line is nearest ``near_line``, or None."""
    found = [u for u in units(source) if u.qualname == qualname]
    return min(found, key=lambda u: abs(u.start_line - near_line), default=None)


def minimal_change(old: str, new: str) -> tuple[int, int, str, int]:
    """The line span replacing ``old`` by ``new``: (first line, end line, new text, end column),
    0-based; the end is (end line, 0) unless the change runs to the end of the text, where it is
    the last line's length in UTF-16 units (end column)."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    head, tail = common_lines(a, b)
    text = "".join(b[head : len(b) - tail])
    end = len(a) - tail
    if end < len(a) or not a or a[-1].endswith(("\n", "\r")):
        return head, end, text, 0
    last = a[-1]
    return head, len(a) - 1, text, len(last.encode("utf-16-le")) // 2


def offer_order(
    ranking: Ranking, verdicts: dict[int, Any], focus: set[int], margin: float
) -> list[int]:
    """Candidate indices in the order they are offered.

    Candidates whose verdict breaks passing tests are left out; those that make failing tests
    pass come first; then the policy's order, except that among candidates whose log-probs are
    within ``margin`` of the best of their group (near-equal scores) one whose change starts on a
    ``focus`` line (the cursor's, a failing test's; 1-based) comes before one that does not.
    ``margin`` 0 keeps the policy's order."""
    order = [i for i in ranking.order if not (i in verdicts and verdicts[i].breaks)]
    improving = [i for i in order if i in verdicts and verdicts[i].improves]
    rest = [i for i in order if i not in improving]
    if margin <= 0 or not focus:
        return improving + rest
    groups: list[list[int]] = []
    for i in rest:
        if groups and ranking.log_probs[groups[-1][0] + 1] - ranking.log_probs[i + 1] <= margin:
            groups[-1].append(i)
        else:
            groups.append([i])

    def far(i: int) -> bool:
        return ranking.candidates[i].line not in focus

    return improving + [i for group in groups for i in sorted(group, key=far)]
