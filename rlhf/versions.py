"""Model versions as rows: which reward model, seam model and policy are active, activate one, roll back.

These services touch only the database, so the site (pages, API, admin) calls
them without loading torch or stable-baselines3; training, loading and
predicting live in ``rlhf.cycle.reward_services`` and ``rlhf.cycle.policy_services``, which
workers and management commands import, and which re-use everything here.
"""
from __future__ import annotations

from django.db import transaction

from annotations.errors import DomainError
from editing.edit import MODEL_FEATURE_VERSION, N_MODEL_FEATURES
from editing.spaces import SpacesSpecMismatch, check_spaces_spec
from rlhf.learning.configs import SEAM_FEATURE_VERSION
from rlhf.models import PolicyVersion, RewardModelVersion, SeamModelVersion


class RewardServiceError(DomainError, ValueError):
    """A reward-model service refused; the message names the version or data and the reason.

    Not a subclass of ``rlhf.learning.reward_data.RewardModelError``: that module imports
    torch, and the site must be able to catch this error without loading it.
    """

    status_code = 409
    code = "reward_model_refused"


class PolicyServiceError(DomainError, ValueError):
    """A policy-version service refused; the message names the version and the reason."""

    status_code = 409
    code = "policy_refused"


# --------------------------------------------------------------------------- reward models

def reward_model_active() -> RewardModelVersion | None:
    return RewardModelVersion.objects.filter(is_active=True).first()


def reward_model_activate(*, version: RewardModelVersion) -> RewardModelVersion:
    """Make ``version`` the one active reward model (refuses one trained on other features)."""
    if version.feature_version != MODEL_FEATURE_VERSION or version.n_features != N_MODEL_FEATURES:
        raise RewardServiceError(
            f"{version.label} was trained on features {version.feature_version!r} ({version.n_features} per beat), "
            f"this code computes {MODEL_FEATURE_VERSION!r} ({N_MODEL_FEATURES} per beat)"
        )
    with transaction.atomic():
        RewardModelVersion.objects.select_for_update().filter(is_active=True).exclude(pk=version.pk).update(
            is_active=False
        )
        RewardModelVersion.objects.filter(pk=version.pk).update(is_active=True)
    version.refresh_from_db()
    return version


def reward_model_rollback() -> RewardModelVersion:
    """Activate the parent of the active version."""
    active = reward_model_active()
    if active is None:
        raise RewardServiceError("no reward model is active: nothing to roll back")
    if active.parent is None:
        raise RewardServiceError(f"{active.label} has no parent version to roll back to")
    return reward_model_activate(version=active.parent)


# --------------------------------------------------------------------------- seam models

class SeamServiceError(DomainError, ValueError):
    """A seam-model service refused; the message names the version and the reason."""

    status_code = 409
    code = "seam_model_refused"


def seam_model_active() -> SeamModelVersion | None:
    return SeamModelVersion.objects.filter(is_active=True).first()


def seam_model_activate(*, version: SeamModelVersion) -> SeamModelVersion:
    """Make ``version`` the one active seam model (refuses one trained on other seam features)."""
    if version.feature_version != SEAM_FEATURE_VERSION:
        raise SeamServiceError(f"{version.label} was trained on seam features {version.feature_version!r}, this code "
                               f"computes {SEAM_FEATURE_VERSION!r}")
    with transaction.atomic():
        SeamModelVersion.objects.select_for_update().filter(is_active=True).exclude(pk=version.pk).update(
            is_active=False)
        SeamModelVersion.objects.filter(pk=version.pk).update(is_active=True)
    version.refresh_from_db()
    return version


def seam_model_rollback() -> SeamModelVersion:
    """Activate the parent of the active seam model."""
    active = seam_model_active()
    if active is None:
        raise SeamServiceError("no seam model is active: nothing to roll back")
    if active.parent is None:
        raise SeamServiceError(f"{active.label} has no parent version to roll back to")
    return seam_model_activate(version=active.parent)


# --------------------------------------------------------------------------- policies

def policy_active() -> PolicyVersion | None:
    return PolicyVersion.objects.filter(is_active=True).first()


def policy_spaces_problem(version: PolicyVersion) -> str | None:
    """Why ``version`` cannot act in this env (it was trained for other spaces), or None when it can."""
    try:
        check_spaces_spec(version.spaces_spec, what=f"policy {version.label}")
    except SpacesSpecMismatch as err:
        return f"{err}; a cycle trains a first policy for the current spaces"
    return None


def policy_activate(*, version: PolicyVersion) -> PolicyVersion:
    """Make ``version`` the one active policy (refuses one saved for other spaces)."""
    problem = policy_spaces_problem(version)
    if problem:
        raise PolicyServiceError(problem)
    with transaction.atomic():
        PolicyVersion.objects.select_for_update().filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        PolicyVersion.objects.filter(pk=version.pk).update(is_active=True)
    version.refresh_from_db()
    return version


def policy_rollback() -> PolicyVersion:
    """Activate the parent of the active policy."""
    active = policy_active()
    if active is None:
        raise PolicyServiceError("no policy is active: nothing to roll back")
    if active.parent is None:
        raise PolicyServiceError(f"policy {active.label} has no parent version to roll back to")
    return policy_activate(version=active.parent)
