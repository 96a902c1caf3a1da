"""What goes wrong with a cycle, as domain errors the one error handler maps to HTTP."""
from __future__ import annotations

from annotations.errors import DomainError


class CycleError(DomainError, ValueError):
    """A cycle cannot be started or run as asked; the message says why."""

    code = "invalid_parameters"


class CycleBusy(CycleError):
    """Another cycle is running."""

    status_code = 409
    code = "cycle_running"


class CycleRefused(CycleError):
    """The studio holds too little data for a cycle (``rlhf.selectors.cycle_preflight`` says what is short)."""

    status_code = 409
    code = "not_enough_data"
