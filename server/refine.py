"""``trustfix refine``: the server's ranked refinements of a file, without an editor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .session import PolicyHost, analyse, candidate_text, make_ranking
from .settings import ServerSettings
from .units import Unit, unit_at, units


def rank_units(
    path: Path, line: int | None = None, settings: ServerSettings | None = None
) -> list[dict[str, Any]]:
    """For each unit of ``path`` (only the one at 1-based ``line`` when given): its name, lines,
    policy version, STOP probability and candidates (title, proposer, probability, line, diff,
    new file text), most probable first."""
    settings = settings or ServerSettings()
    source = path.read_text()
    if line is not None:
        found = unit_at(source, line)
        if found is None:
            raise ValueError(f"no function at line {line} of {path}")
        chosen: list[Unit] = [found]
    else:
        chosen = units(source)
    host = PolicyHost(settings.checkpoints, settings.checkpoint_poll_s)
    try:
        out = []
        for unit in chosen:
            analysed = analyse(
                source,
                unit,
                path.name,
                None,
                settings.max_candidates,
                budget=settings.candidate_budget,
            )
            ranked = None
            if analysed[1]:
                texts = [candidate_text(c) for c in analysed[1]]
                ranked = host.rank(analysed[2], texts).result()
            ranking = make_ranking(unit, analysed, ranked)
            out.append(
                {
                    "unit": unit.qualname,
                    "start_line": unit.start_line,
                    "end_line": unit.end_line,
                    "policy_version": ranking.policy_version,
                    "stop_probability": ranking.stop_prob,
                    "policy": host.start_policy if ranking.policy_version is None else "checkpoint",
                    "candidates": [
                        {
                            "title": ranking.candidates[i].title,
                            "proposer": ranking.candidates[i].proposer,
                            "probability": ranking.prob(i),
                            "line": ranking.candidates[i].line,
                            "diff": ranking.candidates[i].diff,
                            "source": ranking.candidates[i].source,
                        }
                        for i in ranking.order
                    ],
                }
            )
        return out
    finally:
        host.close()
