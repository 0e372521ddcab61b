"""Static findings on Python source: ruff (JSON on stdin) and semgrep with trustfix's own rules.

ruff runs in a few milliseconds and is cached by content; semgrep costs ~1.5 s a call, so it only
ever runs in the background (:class:`SemgrepCache`), never on a latency path, and never touches
the network.  The parts: :mod:`.config` (settings, executables), :mod:`.model` (findings and
edits), :mod:`.cache` (the LRU), :mod:`.ruff` and :mod:`.semgrep`.
"""

from .cache import LRUCache
from .config import DEFAULT_CONFIG, AnalysisConfig, tool_path
from .model import Edit, Finding, apply_edits, content_hash, findings_by_line
from .ruff import (
    RUFF_CHECK_CACHE,
    parse_ruff_json,
    ruff_check_command,
    ruff_check_key,
    ruff_findings,
    ruff_format_command,
)
from .semgrep import (
    SemgrepCache,
    rules_path,
    semgrep_command,
    semgrep_env,
    semgrep_findings,
    semgrep_findings_many,
)

__all__ = [
    "DEFAULT_CONFIG",
    "RUFF_CHECK_CACHE",
    "AnalysisConfig",
    "Edit",
    "Finding",
    "LRUCache",
    "SemgrepCache",
    "apply_edits",
    "content_hash",
    "findings_by_line",
    "parse_ruff_json",
    "ruff_check_command",
    "ruff_check_key",
    "ruff_findings",
    "ruff_format_command",
    "rules_path",
    "semgrep_command",
    "semgrep_env",
    "semgrep_findings",
    "semgrep_findings_many",
    "tool_path",
]
