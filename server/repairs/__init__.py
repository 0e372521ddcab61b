"""Repair edits over the tree-sitter syntax tree, in the families of real one-line bugs, and the
candidate budget that merges them with the other proposers' candidates.

One module per family group: :mod:`.operators` (operator and builtin swaps), :mod:`.arithmetic`
(off-by-one, adjustments, literals), :mod:`.replace` (names and expressions in scope),
:mod:`.swaps` (arguments, operands, indices), :mod:`.conditions` (negation, extension,
narrowing), :mod:`.statements` (return values, wrapping calls, missing statements);
:mod:`.engine` runs them over a byte range and :mod:`.budget` allocates the candidate slots.
"""

from .budget import DEFAULT_BUDGET, CandidateBudget, allocate
from .core import RepairEdit
from .engine import FAMILIES, edit_parses, repair_edits

__all__ = [
    "DEFAULT_BUDGET",
    "FAMILIES",
    "CandidateBudget",
    "RepairEdit",
    "allocate",
    "edit_parses",
    "repair_edits",
]
