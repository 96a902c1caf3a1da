"""Policy-version services: register, activate, roll back and load PolicyVersion rows; simulated evaluation.

The one place that joins PolicyVersion rows and ``rlhf.policy``; it imports torch and
stable-baselines3, so the site uses the row-only services of ``rlhf.versions``
(activate, roll back, the active version), which are re-exported here.  Checkpoints are
published like reward models (``rlhf.artifacts``): written to the app-ignored
temporary folder, verified by loading, moved into ``policies/`` and registered
in one transaction, so the app sees a registered version with its file, or neither.

Simulated evaluation
--------------------
:func:`simulated_win_rates` answers "would the simulated annotators of
``rlhf.simulate`` prefer this policy's edits?" without creating any rows: for
fixed, seeded excerpts it renders the policy's edit and an opponent's edit in
memory, scores both with the hidden :class:`rlhf.simulate.PreferenceRule`, and
averages the probability that the :class:`rlhf.simulate.AnnotatorModel` prefers
the policy's edit (noise included; a tie of scores counts one half).  Using the
probability instead of drawn answers removes the coin-flip noise from the figure.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from sb3_contrib import MaskablePPO

from annotations.models import Track
from annotations.services import track_load_analysis, track_load_audio
from editing.baselines import bar_aligned_cut, random_actions
from editing.edit import apply_actions
from editing.env import EnvConfig, TrackArrays, spaces_spec
from editing.render import render_edit
from rlhf import artifacts
from rlhf.models import PolicyVersion, RewardModelVersion
from rlhf.policy import TrainingRun, load_policy, sample_actions, save_policy
from rlhf.proposal import choose_excerpts
from rlhf.reward_services import training_device
from rlhf.simulate import AnnotatorModel, PreferenceRule, seam_output_beats
from rlhf.versions import (  # noqa: F401  (policy_active, policy_rollback: re-exported, see the module docstring)
    PolicyServiceError,
    policy_activate,
    policy_active,
    policy_rollback,
)

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
    """The version's policy for sampling, on the training device (cached per process; a version's file never changes)."""
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


# --------------------------------------------------------------------------- simulated evaluation

RANDOM = "random"
BAR_CUT = "bar_aligned_cut"
Opponent = MaskablePPO | str


@dataclass(frozen=True)
class WinRate:
    """Expected share of simulated judgements preferring the policy, over ``n_excerpts`` excerpts."""

    opponent: str
    win_rate: float
    n_excerpts: int
    mean_score_policy: float
    mean_score_opponent: float


def _rule_score(rule: PreferenceRule, y: np.ndarray, sr: int, beat_samples: np.ndarray, bar_positions: np.ndarray,
                edit, target_beats: int) -> float:
    result = render_edit(y, sr, beat_samples, edit)
    seam_beats = seam_output_beats(result.beat_starts_seconds, list(result.seam_seconds))
    return rule.score(result.audio, result.sample_rate, seam_seconds=list(result.seam_seconds),
                      track_beats=result.track_beats, seam_output_beats=seam_beats, bar_positions=bar_positions,
                      target_beats=target_beats)


def simulated_win_rates(
    *,
    tracks: Sequence[Track],
    policy: MaskablePPO,
    opponents: dict[str, Opponent],
    n_excerpts: int = 24,
    seed: int = 12345,
    deterministic: bool = False,
    rule: PreferenceRule = PreferenceRule(),
    annotator: AnnotatorModel = AnnotatorModel(),
    env_config: EnvConfig = EnvConfig(),
) -> dict[str, WinRate]:
    """Win rate of ``policy`` against each opponent (a policy, ``"random"`` or ``"bar_aligned_cut"``).

    The excerpts depend only on ``seed`` and the tracks, so figures from
    different cycles are measured on the same excerpts.  Policies sample
    stochastically unless ``deterministic`` (what the proposals show annotators).
    """
    arrays = track_arrays(tracks)
    rng = np.random.default_rng(seed)
    excerpts = choose_excerpts(arrays, n_excerpts, rng, env_config=env_config)
    audio = {i: track_load_audio(t) for i, t in enumerate(tracks)}
    sr = track_load_analysis(tracks[0]).sample_rate

    def actions_of(who: Opponent, draw: np.random.Generator) -> list[list[int]]:
        if isinstance(who, str):
            out = []
            for ex in excerpts:
                bars = arrays[ex.track_index].bar_positions[ex.start: ex.start + ex.n_beats]
                if who == RANDOM:
                    out.append(random_actions(draw, bar_positions=bars, target_beats=ex.target_beats))
                elif who == BAR_CUT:
                    out.append(bar_aligned_cut(bar_positions=bars, target_beats=ex.target_beats))
                else:
                    raise PolicyServiceError(f"opponent {who!r}: expected a policy, {RANDOM!r} or {BAR_CUT!r}")
            return out
        return sample_actions(who, arrays, excerpts, deterministic=deterministic, rng=draw)

    def scores(actions: list[list[int]]) -> np.ndarray:
        out = np.zeros(len(excerpts))
        for k, (ex, acts) in enumerate(zip(excerpts, actions)):
            track = arrays[ex.track_index]
            edit = apply_actions(acts, excerpt_start=ex.start,
                                 bar_positions=track.bar_positions[ex.start: ex.start + ex.n_beats])
            out[k] = _rule_score(rule, audio[ex.track_index], sr, track.beat_samples, track.bar_positions, edit,
                                 ex.target_beats)
        return out

    mine = scores(actions_of(policy, np.random.default_rng(seed + 1)))
    results = {}
    for name, who in opponents.items():
        theirs = scores(actions_of(who, np.random.default_rng(seed + 2)))
        margin = mine - theirs
        p_rule = np.where(margin == 0.0, 0.5, 1.0 / (1.0 + np.exp(-margin / annotator.temperature)))
        p_win = annotator.noise * 0.5 + (1.0 - annotator.noise) * p_rule
        results[name] = WinRate(opponent=name, win_rate=float(p_win.mean()), n_excerpts=len(excerpts),
                                mean_score_policy=float(mine.mean()), mean_score_opponent=float(theirs.mean()))
    return results
