"""Policy-version services: register, activate, roll back and load PolicyVersion rows.

The one place that joins PolicyVersion rows and ``rlhf.learning.policy``; it imports torch
and stable-baselines3, so the site uses the row-only services of ``rlhf.versions``
(activate, roll back, the active version).  Checkpoints are
published like reward models (``rlhf.artifacts``): written to the app-ignored
temporary folder, verified by loading, moved into ``policies/`` and registered
in one transaction, so the app sees a registered version with its file, or neither.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

from sb3_contrib import MaskablePPO

from annotations.models import Track
from annotations.services import track_load_analysis
from editing.env import TrackArrays
from editing.spaces import spaces_spec
from rlhf import artifacts
from rlhf.models import PolicyVersion, RewardModelVersion
from rlhf.learning.policy import TrainingRun, load_policy, save_policy
from rlhf.cycle.reward_services import training_device
from rlhf.versions import PolicyServiceError, policy_activate, policy_spaces_problem

ARTIFACT_FOLDER = "policies"


# --------------------------------------------------------------------------- tracks

def track_arrays(tracks: Sequence[Track]) -> list[TrackArrays]:
    """What the editing env needs of each track, in the same order."""
    out = []
    for track in tracks:
        analysis = track_load_analysis(track)
        out.append(TrackArrays(name=track.title, features=analysis.features, beat_samples=analysis.beat_samples,
                               bar_positions=analysis.bar_positions))
    return out


# --------------------------------------------------------------------------- versions

def policy_artifact_path(version: PolicyVersion) -> Path:
    path = artifacts.storage_root() / version.artifact.name
    if not path.exists():
        raise PolicyServiceError(f"policy {version.label}: artifact {version.artifact.name} is missing")
    return path


_LOADED: dict[tuple[int, str, str | None], MaskablePPO] = {}


def policy_load(version: PolicyVersion) -> MaskablePPO:
    """The version's policy for sampling, on the training device (cached per process; a version's file never changes).

    Raises
    ------
    PolicyServiceError
        For a version trained for other observation or action spaces (an older studio's), by its label.
    """
    problem = policy_spaces_problem(version)
    if problem:
        raise PolicyServiceError(problem)
    device = training_device()
    key = (version.pk, version.artifact_sha256, device)
    if key not in _LOADED:
        _LOADED[key] = load_policy(policy_artifact_path(version), device=device)
    return _LOADED[key]


def policy_register(
    *,
    run: TrainingRun,
    reward_model: RewardModelVersion | None,
    parent: PolicyVersion | None,
    hyperparameters: dict[str, Any],
    activate: bool = False,
    on_register: Callable[[PolicyVersion], None] | None = None,
) -> PolicyVersion:
    """Publish the trained policy of ``run`` as a new version.

    ``on_register`` runs inside the registering transaction (a cycle links the
    version to itself there, so a version never exists without its cycle).
    """
    referenced = set(PolicyVersion.objects.values_list("artifact", flat=True))
    artifacts.artifacts_clean(folder=ARTIFACT_FOLDER, referenced=referenced)
    metrics = {**run.summary(), "per_update": [u.to_json() for u in run.updates], "n_learned_calls": run.n_learned_calls}

    def verify(path: Path) -> None:
        loaded = load_policy(path, device="cpu")
        if loaded.num_timesteps != run.num_timesteps:
            raise artifacts.ArtifactError(
                f"{path.name}: {loaded.num_timesteps} timesteps read back, {run.num_timesteps} trained"
            )

    def register(name: str, sha: str) -> PolicyVersion:
        version = PolicyVersion.objects.create(
            artifact=name, artifact_sha256=sha, spaces_spec=spaces_spec(), reward_model=reward_model, parent=parent,
            num_timesteps=run.num_timesteps, hyperparameters=hyperparameters, metrics=metrics,
        )
        if on_register is not None:
            on_register(version)
        if activate:
            policy_activate(version=version)
        return version

    with artifacts.staged_file(".zip") as staged:
        # save_policy wants a .zip name; it writes and verifies there, then we take the
        # file under the .partial name that the stale-file sweep knows.
        written = staged.with_name(staged.name.removesuffix(".partial"))
        try:
            save_policy(run.model, written)
            os.replace(written, staged)
        finally:
            written.unlink(missing_ok=True)
        version = artifacts.artifact_publish(
            staged=staged, name=f"{ARTIFACT_FOLDER}/{uuid.uuid4().hex}.zip", verify=verify, register=register
        )
    version.refresh_from_db()
    return version
