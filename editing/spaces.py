"""The policy's observation and action spaces, declared once: layout, sizes and the spec checkpoints record.

Pure and gymnasium-free, so a process that only checks whether a stored policy fits
(the retarget page, the cycle form) loads no RL library; ``editing.env`` builds its
``gymnasium`` spaces and writes its observations from these declarations.
"""
from __future__ import annotations

from typing import Any

from editing.audio import FEATURE_VERSION, N_AUDIO_FEATURES
from editing.edit import ACTION_SET_VERSION, N_ACTIONS, Action

OBS_VERSION = "editing-obs-v4"  # v4: ten actions (LOOP_PHRASE), so the mask and one-hot blocks grew
OBS_CLIP = 5.0
CONTEXT_BEFORE = 4
CONTEXT_AFTER = 4
# Feature groups (and the slice within each) that describe a neighbour beat compactly.
CONTEXT_FEATURE_GROUPS: tuple[tuple[str, int], ...] = (
    ("loudness", 3),
    ("onset", 2),
    ("chroma", 12),
    ("mfcc", 6),
    ("band_energy", 3),
    ("bar_position", 4),
)
N_COMPACT = sum(n for _, n in CONTEXT_FEATURE_GROUPS) + 1  # + the "beat exists" flag
N_SUMMARY = 5
N_LAST_ACTION = N_ACTIONS + 1
N_TARGET = 3
N_HEURISTIC = N_ACTIONS + 1

OBS_LAYOUT: tuple[tuple[str, int], ...] = (
    ("current_beat", N_AUDIO_FEATURES),
    ("context_before", CONTEXT_BEFORE * N_COMPACT),
    ("context_after", CONTEXT_AFTER * N_COMPACT),
    ("last_output_beat", N_COMPACT),
    ("edit_summary", N_SUMMARY),
    ("last_action", N_LAST_ACTION),
    ("action_mask", N_ACTIONS),
    ("target", N_TARGET),
    ("heuristic", N_HEURISTIC),
)
OBS_DIM = sum(n for _, n in OBS_LAYOUT)



class SpacesSpecMismatch(ValueError):
    """A stored spaces spec (a policy checkpoint's) differs from this environment's."""


def spaces_spec() -> dict[str, Any]:
    """The spaces as a JSON-serialisable dict, stored with every policy checkpoint.

    Returns
    -------
    spec : dict
        ``{"observation": {version, shape, dtype, low, high, layout, feature_version,
        context_features}, "action": {n, names, version}}``.
    """
    return {
        "observation": {
            "version": OBS_VERSION,
            "shape": [OBS_DIM],
            "dtype": "float32",
            "low": -OBS_CLIP,
            "high": OBS_CLIP,
            "layout": [[name, n] for name, n in OBS_LAYOUT],
            "feature_version": FEATURE_VERSION,
            "context_features": [[group, n] for group, n in CONTEXT_FEATURE_GROUPS],
        },
        "action": {"n": N_ACTIONS, "names": [a.name for a in Action], "version": ACTION_SET_VERSION},
    }


def check_spaces_spec(stored: dict[str, Any], *, what: str = "policy checkpoint") -> None:
    """Raise :class:`SpacesSpecMismatch` unless ``stored`` equals :func:`spaces_spec`.

    ``what`` names the owner of ``stored`` in the message.
    """
    current = spaces_spec()
    if stored == current:
        return
    differences = [
        f"{part}.{key}: stored {stored.get(part, {}).get(key)!r}, current {current[part][key]!r}"
        for part in current
        for key in current[part]
        if stored.get(part, {}).get(key) != current[part][key]
    ]
    raise SpacesSpecMismatch(f"{what}: spaces differ from this environment's ({'; '.join(differences) or 'extra keys'})")
