"""The repair families under their first names (see :mod:`trustfix.server.repairs`).

``operator_edits`` is :func:`~trustfix.server.repairs.repair_edits` (its ``families`` argument
restricts the families), ``OPERATORS`` the family names, ``OperatorEdit`` the edit type.
"""

from __future__ import annotations

from .repairs import FAMILIES as OPERATORS
from .repairs import RepairEdit as OperatorEdit
from .repairs import repair_edits as operator_edits

__all__ = ["OPERATORS", "OperatorEdit", "operator_edits"]
