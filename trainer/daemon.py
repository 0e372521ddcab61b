"""``trustfix train``, the trainer daemon: the names other parts import, from the modules that
own them (:mod:`.ingest` the ZeroMQ side, :mod:`.learner` the learning process, :mod:`.admin`
the offline verbs, :mod:`.store` the store's lock)."""

from .admin import estimator_from_store, explain, export_reviewer, forget_offline, status
from .ingest import TrainerDaemon
from .learner import Learner, StepResult, run_learner
from .store import hold_store_lock

__all__ = [
    "Learner",
    "StepResult",
    "TrainerDaemon",
    "estimator_from_store",
    "explain",
    "export_reviewer",
    "forget_offline",
    "hold_store_lock",
    "run_learner",
    "status",
]
