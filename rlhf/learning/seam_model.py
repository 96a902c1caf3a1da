"""The learned seam cost: a residual on the heuristic's seam cost, learned from judgements, planned exactly.

Pure module (numpy + scipy, no Django, no torch).

An edit's cost to the planner is the sum of its seam costs.  The learned planner prices a seam
from track beat ``a`` to track beat ``b`` at ``heuristic(a, b) + residual(a, b)``, with a linear
residual ``w . phi(a, b) / beta`` over :func:`seam_features` (how ``b`` continues from ``a`` against
the natural continuation ``a + 1``, in each feature group; metre, phrase and jump length).  A
judgement between edits A and B of one passage says which total cost a listener preferred
lower, so it constrains only the seams in which the two edits differ (Bradley-Terry):

    P(A preferred) = lapse / 2 + (1 - lapse) * sigmoid(beta * (H_B - H_A) + w . (Phi_B - Phi_A))

with ``H`` an edit's heuristic cost, ``Phi`` the sum of its seams' features, confidence-shaped
targets (``rlhf.learning.reward_data.confidence_target``) and weights.  ``beta`` (how much the
heuristic's cost counts for listeners) is fitted with a prior toward 1 and ``w`` with a prior
toward 0 (each as strong as ``l2`` judgements): with no judgements the residual is exactly 0.

``lapse`` (fitted, at most ``max_lapse``) is the share of answers that do not follow the edits:
people misclick, skip listening, answer at random.  Without it, a pair whose costs differ by a
lot (the heuristic against a random edit) that is still sometimes answered the wrong way can only
be explained by a smaller ``beta`` and a residual that makes every seam cheaper than the
heuristic says, and the planner then departs into seams the judgements never priced (measured on
the real corpus: the learned planner lost 0.30 to the heuristic, worse on 11 of 24 held-out
passages; with the lapse, 0.51, worse on 1).

An ensemble of members fitted on bootstrap resamples of the judgements (grouped by passage)
gives each seam a mean residual and a spread.  :class:`LearnedSeamCost` plans with a
pessimistic cost: ``mean + k * spread`` for every seam the heuristic's own edit does not use, so
the planner departs from the heuristic only where the members agree that a departure is cheaper.

PPO (``rlhf.learning.policy``) meets the learned planner on fair terms: a first policy imitates
:func:`learned_plan` where it departs from :func:`heuristic_plan`, and best-of-N's pool holds the
learned plan and its :func:`cheapest_departures` beside the policy's edits and the heuristic's.
"""
from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from editing.audio import FEATURE_GROUPS, N_AUDIO_FEATURES
from editing.baselines import edit_cost, retarget_heuristic, seam_cost
from editing.dense import DenseContext
from editing.edit import Edit, EditBuilder, apply_actions
from editing.planner import RetargetPlanner, alternatives, plan_actions
from rlhf.learning.configs import QUESTION_SELECTIONS, SEAM_FEATURE_VERSION, SeamTrainingConfig

CHECKPOINT_FORMAT = "seam-model-v1"
BEATS_PER_PHRASE = 16
# Feature groups compared across the seam (their mean absolute z-scored difference).
_CONTINUITY_GROUPS = ("logmel", "mfcc", "chroma", "contrast", "tonnetz", "onset", "loudness", "shape", "band_energy")
_BAR = FEATURE_GROUPS["bar_position"]
_PHRASE_COLUMN = FEATURE_GROUPS["position"].start + 1
FEATURE_NAMES: tuple[str, ...] = (
    tuple(f"into_b_{g}" for g in _CONTINUITY_GROUPS)         # b against a + 1 (what should have followed a)
    + tuple(f"out_of_a_{g}" for g in _CONTINUITY_GROUPS)     # a against b - 1 (what should have led into b)
    + tuple(f"b_bar_position_{k}" for k in range(4))
    + ("metre_break", "phrase_distance", "b_phrase_start", "next_phrase_start", "backward", "log_jump_beats",
       "whole_bars", "whole_phrases", "constant")
)
N_SEAM_FEATURES = len(FEATURE_NAMES)


class SeamModelError(ValueError):
    """A seam-model operation refused (bad data, a corrupt or foreign checkpoint); the message says why."""


# --------------------------------------------------------------------------- features

def track_feature_scale(features: np.ndarray) -> np.ndarray:
    """Per-track z-scored beat features, float64 (n_beats, 121): the seam features compare beats of one track."""
    if features.ndim != 2 or features.shape[1] != N_AUDIO_FEATURES:
        raise SeamModelError(f"track features have shape {features.shape}, expected (n_beats, {N_AUDIO_FEATURES})")
    x = features.astype(np.float64)
    return (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)


def seam_features(scaled: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Features of seams from track beat ``a`` (last before it) to track beat ``b`` (first after it).

    Parameters
    ----------
    scaled : np.ndarray [shape=(n_beats, 121)], float64
        The track's beat features, z-scored (:func:`track_feature_scale`).
    a, b : np.ndarray [shape=(k,)], int
        Track beat indices.

    Returns
    -------
    np.ndarray [shape=(k, N_SEAM_FEATURES)], float64, every value finite
    """
    a = np.asarray(a, dtype=np.int64).reshape(-1)
    b = np.asarray(b, dtype=np.int64).reshape(-1)
    last = scaled.shape[0] - 1
    after_a = np.minimum(a + 1, last)
    before_b = np.maximum(b - 1, 0)
    columns = []
    for x, y in ((after_a, b), (a, before_b)):
        for group in _CONTINUITY_GROUPS:
            sl = FEATURE_GROUPS[group]
            columns.append(np.minimum(np.abs(scaled[x, sl] - scaled[y, sl]).mean(1), 10.0))
    raw_bar_b = scaled[b, _BAR]
    bar_b = (raw_bar_b == raw_bar_b.max(1, keepdims=True)).astype(np.float64)
    bar_next = scaled[after_a, _BAR]
    metre_break = (np.argmax(bar_next, 1) != np.argmax(raw_bar_b, 1)).astype(np.float64)
    phrase_column = scaled[:, _PHRASE_COLUMN]
    phrase = np.abs(phrase_column[after_a] - phrase_column[b])
    # The lowest phrase position of the track is a phrase's first beat (z-scoring keeps the order).
    first = phrase_column.min() if phrase_column.size else 0.0
    b_phrase_start = (phrase_column[b] <= first + 1e-9).astype(np.float64)
    next_phrase_start = (phrase_column[after_a] <= first + 1e-9).astype(np.float64)
    jump = b - (a + 1)
    out = np.column_stack([
        *columns, bar_b, metre_break, np.minimum(phrase, 10.0), b_phrase_start, next_phrase_start,
        (jump < 0).astype(np.float64),
        np.log1p(np.abs(jump)) / 5.0, (jump % 4 == 0).astype(np.float64),
        (jump % BEATS_PER_PHRASE == 0).astype(np.float64), np.ones(a.size),
    ])
    return np.nan_to_num(out, nan=0.0, posinf=10.0, neginf=-10.0)


def edit_seam_sum(scaled: np.ndarray, track_beats: np.ndarray, seam_beats: np.ndarray) -> np.ndarray:
    """Sum of :func:`seam_features` over an edit's seams, float64 (N_SEAM_FEATURES,).

    ``track_beats``: the edit's output beats as track beat indices; ``seam_beats``: output beat
    indices where a seam lands (``editing.edit.Edit.seam_beats``).
    """
    seam_beats = np.asarray(seam_beats, dtype=np.int64)
    if seam_beats.size == 0:
        return np.zeros(N_SEAM_FEATURES)
    return seam_features(scaled, track_beats[seam_beats - 1], track_beats[seam_beats]).sum(0)


# --------------------------------------------------------------------------- data and training

@dataclass(frozen=True)
class SeamPairs:
    """Judged pairs of edits of one passage each, as the seam model reads them.

    Attributes
    ----------
    phi_a, phi_b : np.ndarray [shape=(n, N_SEAM_FEATURES)], float64
        Sum of each edit's seam features.
    heuristic_a, heuristic_b : np.ndarray [shape=(n,)], float64
        Each edit's heuristic cost (``editing.baselines.edit_cost``).
    target : np.ndarray [shape=(n,)], float64
        P(A preferred) the judgements stand for.
    weight : np.ndarray [shape=(n,)], float64
        Judgements behind each row.
    group : np.ndarray [shape=(n,)], int64
        Passage (or track) each row belongs to: bootstrap and splits resample whole groups.
    """

    phi_a: np.ndarray
    phi_b: np.ndarray
    heuristic_a: np.ndarray
    heuristic_b: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    group: np.ndarray

    def __post_init__(self) -> None:
        n = self.target.shape[0]
        for name in ("phi_a", "phi_b"):
            if getattr(self, name).shape != (n, N_SEAM_FEATURES):
                raise SeamModelError(f"{name} has shape {getattr(self, name).shape}, expected ({n}, {N_SEAM_FEATURES})")
        for name in ("heuristic_a", "heuristic_b", "weight", "group"):
            if getattr(self, name).shape != (n,):
                raise SeamModelError(f"{name} has shape {getattr(self, name).shape}, expected ({n},)")
        finite = all(np.isfinite(getattr(self, k)).all() for k in ("phi_a", "phi_b", "heuristic_a", "heuristic_b",
                                                                      "target", "weight"))
        if not finite:
            raise SeamModelError("seam pairs hold NaN or infinite values")

    @classmethod
    def empty(cls) -> "SeamPairs":
        none = np.zeros(0)
        return cls(np.zeros((0, N_SEAM_FEATURES)), np.zeros((0, N_SEAM_FEATURES)), none, none.copy(), none.copy(),
                   none.copy(), np.zeros(0, dtype=np.int64))

    @property
    def n_pairs(self) -> int:
        return int(self.target.shape[0])

    def subset(self, rows: np.ndarray) -> "SeamPairs":
        return SeamPairs(self.phi_a[rows], self.phi_b[rows], self.heuristic_a[rows], self.heuristic_b[rows],
                         self.target[rows], self.weight[rows], self.group[rows])


@dataclass
class SeamModel:
    """An ensemble of linear residuals: ``members_w`` (m, N_SEAM_FEATURES), ``members_beta`` (m,) and
    ``members_lapse`` (m,; 0 for models stored before the lapse was fitted)."""

    members_w: np.ndarray
    members_beta: np.ndarray
    config: SeamTrainingConfig = field(default_factory=SeamTrainingConfig)
    feature_version: str = SEAM_FEATURE_VERSION
    n_pairs: int = 0
    members_lapse: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.members_lapse is None:
            self.members_lapse = np.zeros(len(self.members_beta))

    @classmethod
    def untrained(cls, config: SeamTrainingConfig = SeamTrainingConfig()) -> "SeamModel":
        """The model of no judgements: every residual 0, so the learned planner plans the heuristic's edit."""
        return cls(np.zeros((config.n_members, N_SEAM_FEATURES)), np.ones(config.n_members), config, n_pairs=0)

    def member_residuals(self, phi: np.ndarray) -> np.ndarray:
        """Each member's residual of each seam, float64 (m, k); ``phi`` (k, N_SEAM_FEATURES)."""
        scale = self.members_w / np.maximum(self.members_beta, self.config.min_beta)[:, None]
        return scale @ phi.T

    def residual(self, phi: np.ndarray, *, pessimism: float = 0.0) -> np.ndarray:
        """Mean residual plus ``pessimism`` times the members' spread, float64 (k,)."""
        members = self.member_residuals(phi)
        out = members.mean(0) + pessimism * members.std(0)
        if not np.isfinite(out).all():
            raise SeamModelError("the seam model produced NaN or infinite residuals")
        return out

    @property
    def is_zero(self) -> bool:
        return not np.any(self.members_w)

    # ----------------------------------------------------------------- checkpoints (JSON, atomic)

    def to_json(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "feature_version": self.feature_version,
                "feature_names": list(FEATURE_NAMES), "config": asdict(self.config), "n_pairs": self.n_pairs,
                "members_w": self.members_w.tolist(), "members_beta": self.members_beta.tolist(),
                "members_lapse": np.asarray(self.members_lapse).tolist()}

    def save(self, path: str | Path) -> None:
        """Write the model to ``path`` atomically (a temporary file in the same folder, then a rename)."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.to_json(), fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> "SeamModel":
        """Read a model written by :meth:`save`; refuses a corrupt file or other features, naming the file."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise SeamModelError(f"{Path(path).name}: not a readable seam model ({err})") from None
        if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
            raise SeamModelError(f"{Path(path).name}: not a {CHECKPOINT_FORMAT} file")
        if data.get("feature_version") != SEAM_FEATURE_VERSION or data.get("feature_names") != list(FEATURE_NAMES):
            raise SeamModelError(f"{Path(path).name}: trained on seam features {data.get('feature_version')!r}, this "
                                 f"code computes {SEAM_FEATURE_VERSION!r}; retrain the seam model")
        w = np.asarray(data["members_w"], dtype=np.float64)
        beta = np.asarray(data["members_beta"], dtype=np.float64)
        lapse = np.asarray(data.get("members_lapse", np.zeros(beta.shape)), dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != N_SEAM_FEATURES or beta.shape != (w.shape[0],) or lapse.shape != beta.shape or not (
                np.isfinite(w).all() and np.isfinite(beta).all() and np.isfinite(lapse).all()):
            raise SeamModelError(f"{Path(path).name}: member weights are malformed")
        return cls(w, beta, SeamTrainingConfig(**data["config"]), data["feature_version"], int(data["n_pairs"]), lapse)


def _fit_member(pairs: SeamPairs, weight: np.ndarray, config: SeamTrainingConfig) -> tuple[np.ndarray, float, float]:
    """One member: minimise the weighted BT-with-lapse loss + l2 (|w|^2 + (beta - 1)^2) over
    (beta >= min_beta, 0.001 <= lapse <= max_lapse, w); returns (w, beta, lapse)."""
    dh = pairs.heuristic_b - pairs.heuristic_a
    dphi = pairs.phi_b - pairs.phi_a
    t = pairs.target
    total = max(float(weight.sum()), 1e-9)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        beta, lapse, w = theta[0], theta[1], theta[2:]
        z = beta * dh + dphi @ w
        s = expit(z)
        p = np.clip(lapse / 2.0 + (1.0 - lapse) * s, 1e-12, 1.0 - 1e-12)
        value = (-np.sum(weight * (t * np.log(p) + (1 - t) * np.log1p(-p))) + config.l2 * (w @ w + (beta - 1.0) ** 2)) / total
        d_p = -weight * (t / p - (1 - t) / (1 - p)) / total
        g = d_p * (1.0 - lapse) * s * (1.0 - s)
        grad = np.concatenate([[g @ dh + 2.0 * config.l2 * (beta - 1.0) / total], [np.sum(d_p * (0.5 - s))],
                               dphi.T @ g + 2.0 * config.l2 * w / total])
        return float(value), grad

    start = np.zeros(2 + N_SEAM_FEATURES)
    start[0], start[1] = 1.0, min(0.05, config.max_lapse)
    bounds = [(config.min_beta, None), (min(1e-3, config.max_lapse), config.max_lapse)] + [(None, None)] * N_SEAM_FEATURES
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 500})
    theta = result.x
    if not np.isfinite(theta).all():
        raise SeamModelError("the seam-model fit diverged")
    return theta[2:].copy(), float(theta[0]), float(theta[1])


def train_seam_model(pairs: SeamPairs, config: SeamTrainingConfig = SeamTrainingConfig()) -> SeamModel:
    """Fit the ensemble: member 0 on all pairs, the others on bootstrap resamples of whole groups.

    No pairs give :meth:`SeamModel.untrained` (every residual exactly 0).
    """
    if pairs.n_pairs == 0:
        return SeamModel.untrained(config)
    rng = np.random.default_rng(config.seed)
    groups = np.unique(pairs.group)
    ws, betas, lapses = [], [], []
    for m in range(config.n_members):
        if m == 0:
            weight = pairs.weight
        else:
            drawn = rng.choice(groups, size=groups.size, replace=True)
            counts = {g: c for g, c in zip(*np.unique(drawn, return_counts=True))}
            weight = pairs.weight * np.array([counts.get(g, 0) for g in pairs.group], dtype=np.float64)
        w, beta, lapse = _fit_member(pairs, weight, config)
        ws.append(w)
        betas.append(beta)
        lapses.append(lapse)
    return SeamModel(np.array(ws), np.array(betas), config, n_pairs=pairs.n_pairs, members_lapse=np.array(lapses))


def preference_probability(model: SeamModel, pairs: SeamPairs) -> np.ndarray:
    """P(A preferred) of each pair under the ensemble's mean cost, float64 (n,)."""
    cost_a = pairs.heuristic_a + model.residual(pairs.phi_a)
    cost_b = pairs.heuristic_b + model.residual(pairs.phi_b)
    beta = float(np.mean(np.maximum(model.members_beta, model.config.min_beta)))
    lapse = float(np.mean(model.members_lapse))
    return lapse / 2.0 + (1.0 - lapse) * expit(beta * (cost_b - cost_a))


# --------------------------------------------------------------------------- the planner's cost

SeamCostFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]


class LearnedSeamCost:
    """The learned planner's seam cost of one track: heuristic + residual, pessimistic off the heuristic's seams.

    Parameters
    ----------
    heuristic : callable (a, b) -> float64 costs
        The heuristic's seam cost of this track (``editing.baselines.seam_cost`` on its context).
    scaled : np.ndarray [shape=(n_beats, 121)]
        The track's z-scored beat features (:func:`track_feature_scale`).
    model : SeamModel
    heuristic_seams : set of (a, b)
        Seams of the heuristic's own edit (track beats): priced at the mean residual.
    pessimism : float
        ``k``; every other seam is priced at ``mean + k * spread``.
    """

    def __init__(self, *, heuristic: SeamCostFunction, scaled: np.ndarray, model: SeamModel,
                 heuristic_seams: set[tuple[int, int]] = frozenset(), pessimism: float | None = None) -> None:
        self.heuristic = heuristic
        self.scaled = scaled
        self.model = model
        self.heuristic_seams = set(heuristic_seams)
        self.pessimism = model.config.pessimism if pessimism is None else float(pessimism)
        if not (math.isfinite(self.pessimism) and self.pessimism >= 0):
            raise SeamModelError(f"pessimism must be a finite k >= 0, got {self.pessimism}")

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        base = np.asarray(self.heuristic(a, b), dtype=np.float64)
        if self.model.is_zero:
            return base  # exactly the heuristic's costs, so exactly its plan
        a = np.asarray(a, dtype=np.int64).reshape(-1)
        b = np.asarray(b, dtype=np.int64).reshape(-1)
        members = self.model.member_residuals(seam_features(self.scaled, a, b))
        mean, spread = members.mean(0), members.std(0)
        known = np.fromiter(((int(x), int(y)) in self.heuristic_seams for x, y in zip(a, b)), dtype=bool,
                            count=a.size)
        cost = base.reshape(-1) + mean + np.where(known, 0.0, self.pessimism * spread)
        if not np.isfinite(cost).all():
            raise SeamModelError("the learned seam cost is NaN or infinite")
        # A seam never costs less than nothing: the planner's exactness assumes non-negative costs.
        return np.maximum(cost, 0.0).reshape(base.shape)



# --------------------------------------------------------------------------- planning with it

@dataclass(frozen=True)
class Passage:
    """One retarget task on one track, as the planners take it.

    Attributes
    ----------
    context : editing.dense.DenseContext
        The track's digested features (the heuristic's seam cost reads them).
    scaled : np.ndarray [shape=(n_beats, 121)]
        The track's z-scored beat features (:func:`track_feature_scale`).
    start : int
        Track beat of the passage's first beat.
    bar_positions : np.ndarray [shape=(n_source_beats,)], int
        The passage's bar positions.
    target_beats : int
        Exact output length, beats.
    """

    context: DenseContext
    scaled: np.ndarray
    start: int
    bar_positions: np.ndarray
    target_beats: int

    def edit(self, actions: Sequence[int]) -> Edit:
        return apply_actions(list(actions), excerpt_start=self.start, bar_positions=self.bar_positions,
                             target_beats=self.target_beats)

    def seams(self, actions: Sequence[int]) -> list[tuple[int, int]]:
        """The (a, b) track beats of every seam of the edit ``actions`` make."""
        edit = self.edit(actions)
        beats, seams = edit.track_beats(), edit.seam_beats()
        return [(int(beats[s - 1]), int(beats[s])) for s in seams]

    def seam_sum(self, actions: Sequence[int]) -> np.ndarray:
        edit = self.edit(actions)
        return edit_seam_sum(self.scaled, edit.track_beats(), edit.seam_beats())

    def heuristic_cost(self, actions: Sequence[int]) -> float:
        return edit_cost(self.edit(actions), self.context)


def heuristic_plan(passage: Passage) -> list[int]:
    """The heuristic's edit of the passage (``editing.baselines.retarget_heuristic``)."""
    return retarget_heuristic(context=passage.context, excerpt_start=passage.start,
                              bar_positions=passage.bar_positions, target_beats=passage.target_beats)


def learned_planner(passage: Passage, model: SeamModel, *, pessimism: float | None = None,
                    heuristic_actions: Sequence[int] | None = None) -> RetargetPlanner:
    """The planner priced by :class:`LearnedSeamCost` for one passage (the heuristic's seams known)."""
    actions = heuristic_plan(passage) if heuristic_actions is None else heuristic_actions
    cost = LearnedSeamCost(heuristic=functools.partial(seam_cost, passage.context), scaled=passage.scaled,
                           model=model, heuristic_seams=set(passage.seams(actions)), pessimism=pessimism)
    return RetargetPlanner(seam_costs=cost, excerpt_start=passage.start, bar_positions=passage.bar_positions,
                           target_beats=passage.target_beats)


def learned_plan(passage: Passage, model: SeamModel, *, pessimism: float | None = None,
                 heuristic_actions: Sequence[int] | None = None) -> list[int]:
    """The learned planner's edit: the least pessimistic learned cost, planned exactly.

    With an untrained model (every residual 0) this is exactly :func:`heuristic_plan`
    (``heuristic_actions`` where the caller has it already).
    """
    if EditBuilder(len(passage.bar_positions), np.asarray(passage.bar_positions),
                   target_beats=passage.target_beats).done:
        return []
    base = heuristic_plan(passage) if heuristic_actions is None else list(heuristic_actions)
    if model.is_zero:
        return base
    planner = learned_planner(passage, model, pessimism=pessimism, heuristic_actions=base)
    return plan_actions(planner, bar_positions=passage.bar_positions, target_beats=passage.target_beats)


@dataclass(frozen=True)
class Departure:
    """A single departure from a plan: one decision changed, the rest re-planned exactly.

    ``extra_cost``: how much dearer by the planner's (pessimistic) cost; ``disagreement``: the
    ensemble members' spread of the cost difference between the two edits.
    """

    actions: list[int]
    step: int
    extra_cost: float
    disagreement: float


def departures(passage: Passage, model: SeamModel, plan: Sequence[int], *, max_extra_cost: float = 3.0,
               pessimism: float | None = None) -> list[Departure]:
    """Single departures from ``plan``, most informative first (largest ensemble disagreement, then cheapest).

    Each changes one decision of the plan to another of the planner's moves and re-plans the
    rest exactly; only departures within ``max_extra_cost`` of the plan, and making an edit
    other than the plan's, are kept.
    """
    found = _departures(passage, model, plan, max_extra_cost=max_extra_cost, pessimism=pessimism)
    return sorted(found, key=lambda d: (-d.disagreement, d.extra_cost))


def cheapest_departures(passage: Passage, model: SeamModel, plan: Sequence[int], *, k: int,
                        max_extra_cost: float = 3.0, pessimism: float | None = None) -> list[Departure]:
    """The plan's ``k`` cheapest single departures by the planner's (pessimistic) cost: its near-optimal
    alternatives.  Only those ``k`` are re-planned, so a long passage costs ``k`` re-plans, not one per decision."""
    return _departures(passage, model, plan, max_extra_cost=max_extra_cost, pessimism=pessimism, cheapest=k)


def _departures(passage: Passage, model: SeamModel, plan: Sequence[int], *, max_extra_cost: float,
                pessimism: float | None, cheapest: int | None = None) -> list[Departure]:
    """Departures within ``max_extra_cost``, each edit once: all of them in the order found, or the ``cheapest``
    ones, cheapest first."""
    plan = list(plan)
    if not plan or cheapest == 0:
        return []
    planner = learned_planner(passage, model, pessimism=pessimism)
    phi_plan = passage.seam_sum(plan)
    own = tuple(passage.edit(plan).track_beats().tolist())
    options = [o for o in alternatives(planner, plan, bar_positions=passage.bar_positions,
                                       target_beats=passage.target_beats) if o[2] <= max_extra_cost]
    if cheapest is not None:
        options.sort(key=lambda o: o[2])
    found: dict[tuple[int, ...], Departure] = {}
    for step, action, extra in options:
        forced = {i: a for i, a in enumerate(plan[:step])}
        forced[step] = action
        actions = plan_actions(planner, bar_positions=passage.bar_positions, target_beats=passage.target_beats,
                               forced=forced)
        key = tuple(passage.edit(actions).track_beats().tolist())
        if key == own or key in found:
            continue
        members = model.member_residuals((passage.seam_sum(actions) - phi_plan)[None, :])[:, 0]
        found[key] = Departure(actions=actions, step=step, extra_cost=extra, disagreement=float(members.std()))
        if cheapest is not None and len(found) == cheapest:
            break
    return list(found.values())


# --------------------------------------------------------------------------- questions that teach it

# Cheapest single departures (by the heuristic's own cost) of each plan that join the question pool.
POOL_DEPARTURES = 6
POOL_MAX_EXTRA_COST = 6.0


@dataclass(frozen=True)
class PoolEdit:
    """One edit a seam question may ask about: its actions and what made it
    (``"heuristic"``, ``"learned"`` or ``"departure"``)."""

    actions: tuple[int, ...]
    source: str


@dataclass(frozen=True)
class Question:
    """Two edits of one passage to compare, and the seam ensemble's spread of their cost difference."""

    a: PoolEdit
    b: PoolEdit
    disagreement: float


def question_pool(passage: Passage, model: SeamModel) -> list[PoolEdit]:
    """The edits a seam judgement can tell apart on one passage: the heuristic's plan, the learned plan
    and each plan's :data:`POOL_DEPARTURES` cheapest single departures, each edit once (first source wins)."""
    heuristic = heuristic_plan(passage)
    learned = learned_plan(passage, model)
    listed = [PoolEdit(tuple(heuristic), "heuristic"), PoolEdit(tuple(learned), "learned")]
    untrained = SeamModel.untrained(model.config)
    for plan in (heuristic, learned):
        listed += [PoolEdit(tuple(d.actions), "departure")
                   for d in departures(passage, untrained, plan, max_extra_cost=POOL_MAX_EXTRA_COST)[:POOL_DEPARTURES]]
    unique: dict[tuple[int, ...], PoolEdit] = {}
    for item in listed:
        unique.setdefault(tuple(passage.edit(item.actions).track_beats().tolist()), item)
    return list(unique.values())


def seam_questions(selection: str, passage: Passage, model: SeamModel, rng: np.random.Generator, k: int = 1
                   ) -> list[Question]:
    """Up to ``k`` questions about ``passage``, chosen by ``selection`` (one of :data:`QUESTION_SELECTIONS`):

    ``random``        two edits of :func:`question_pool` drawn uniformly;
    ``disagreement``  the pool's pairs whose cost difference the seam ensemble's members disagree on most;
    ``departures``    the learned plan against its most disputed single departures.

    Every question pairs two different edits; a passage with nothing to decide gives none.
    """
    if selection not in QUESTION_SELECTIONS:
        raise SeamModelError(f"question selection {selection!r} is unknown (known: {', '.join(QUESTION_SELECTIONS)})")
    if selection == "departures":
        plan = learned_plan(passage, model)
        return [Question(PoolEdit(tuple(plan), "learned"), PoolEdit(tuple(d.actions), "departure"), d.disagreement)
                for d in departures(passage, model, plan)[:k]]
    pool = question_pool(passage, model)
    pairs = [(i, j) for i in range(len(pool)) for j in range(i + 1, len(pool))]
    if not pairs:
        return []
    phi = np.array([passage.seam_sum(p.actions) for p in pool])
    spread = np.array([model.member_residuals((phi[i] - phi[j])[None, :])[:, 0].std() for i, j in pairs])
    if selection == "random":
        rows = rng.choice(len(pairs), size=min(k, len(pairs)), replace=False)
    else:
        rows = np.argsort(-spread + 1e-9 * rng.random(len(pairs)))[:k]
    return [Question(pool[pairs[r][0]], pool[pairs[r][1]], float(spread[r])) for r in rows]


# --------------------------------------------------------------------------- choosing k on training tracks

PESSIMISM_GRID = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
# A k whose plans the referee finds worse than the heuristic's on more than this share of the
# validation passages is not chosen (the mission's bar: worse on at most 10 % of passages).
MAX_WORSE_SHARE = 0.1


@dataclass(frozen=True)
class PessimismChoice:
    """``k`` chosen by :func:`choose_pessimism`, and the evidence for it (all on training tracks).

    ``gain[k]``: mean over validation passages of P(the learned plan preferred over the heuristic's)
    - 0.5, under a referee fitted on the validation tracks' own judgements only (0 where the plan is
    the heuristic's); ``departs[k]``: validation passages on which the plan departs; ``worse[k]``:
    those on which the referee prefers the heuristic's plan.
    """

    k: float
    gain: dict[float, float]
    departs: dict[float, int]
    n_passages: int
    n_folds: int
    reason: str
    worse: dict[float, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"k": self.k, "gain": {str(k): round(v, 5) for k, v in self.gain.items()},
                "departs": {str(k): v for k, v in self.departs.items()},
                "worse": {str(k): v for k, v in self.worse.items()}, "n_passages": self.n_passages,
                "n_folds": self.n_folds, "reason": self.reason}


def choose_pessimism(pairs: SeamPairs, row_tracks: np.ndarray, passages: dict[int, Sequence[Passage]],
                     config: SeamTrainingConfig = SeamTrainingConfig(), *, grid: Sequence[float] = PESSIMISM_GRID,
                     n_folds: int = 3, max_passages_per_fold: int = 60) -> PessimismChoice:
    """Choose the learned planner's ``k`` by cross-validation over the judged (training) tracks.

    The judged tracks are cut into ``n_folds`` folds.  For each fold, a model fitted on the other
    folds' judgements plans that fold's judged passages with every ``k`` of ``grid``, and a referee
    fitted on that fold's own judgements only says how likely a listener prefers each plan to the
    heuristic's.  ``k`` is the value of the best mean gain among those whose plans the referee finds
    worse on at most :data:`MAX_WORSE_SHARE` of the passages (the largest ``k`` when none is);
    ties (such as no departure anywhere) go to the larger ``k``, the more cautious.  Tracks outside
    ``row_tracks`` are never read: held-out tracks stay held out.

    Parameters
    ----------
    pairs : SeamPairs
        The training judgements.
    row_tracks : np.ndarray [shape=(pairs.n_pairs,)], int
        The track of each row.
    passages : dict
        Track (as in ``row_tracks``) -> its judged passages (the planners' tasks the judgements were about).
    config : SeamTrainingConfig
        How every fold's models are fitted; its ``pessimism`` is the answer when there is too
        little to choose with (fewer than two judged tracks).
    """
    tracks = np.unique(row_tracks)
    if tracks.size < 2 or pairs.n_pairs == 0:
        return PessimismChoice(float(config.pessimism), {}, {}, 0, 0,
                               f"{tracks.size} judged track(s): k stays {config.pessimism:g} (2 needed to choose)")
    rng = np.random.default_rng(config.seed)
    folds = np.array_split(rng.permutation(tracks), min(n_folds, tracks.size))
    gains: dict[float, list[float]] = {float(k): [] for k in grid}
    departs = {float(k): 0 for k in grid}
    worse = {float(k): 0 for k in grid}
    for fold in folds:
        val = np.isin(row_tracks, fold)
        fitted = train_seam_model(pairs.subset(np.flatnonzero(~val)), config)
        referee = train_seam_model(pairs.subset(np.flatnonzero(val)), config)
        tasks = [p for t in fold for p in passages.get(int(t), ())]
        if len(tasks) > max_passages_per_fold:
            tasks = [tasks[i] for i in np.sort(rng.choice(len(tasks), max_passages_per_fold, replace=False))]
        for passage in tasks:
            base = heuristic_plan(passage)
            if not base:
                continue
            phi_h, cost_h = passage.seam_sum(base), passage.heuristic_cost(base)
            for k in gains:
                plan = base if fitted.is_zero else learned_plan(passage, fitted, pessimism=k, heuristic_actions=base)
                if plan == base:
                    gains[k].append(0.0)
                    continue
                departs[k] += 1
                versus = SeamPairs(passage.seam_sum(plan)[None, :], phi_h[None, :],
                                   np.array([passage.heuristic_cost(plan)]), np.array([cost_h]),
                                   np.array([0.5]), np.ones(1), np.zeros(1, dtype=np.int64))
                gains[k].append(float(preference_probability(referee, versus)[0]) - 0.5)
                worse[k] += gains[k][-1] < 0
    n = len(next(iter(gains.values())))
    if n == 0:
        return PessimismChoice(float(config.pessimism), {}, {}, 0, len(folds),
                               f"no judged passage to validate on: k stays {config.pessimism:g}")
    mean = {k: float(np.mean(v)) for k, v in gains.items()}
    allowed = [k for k in mean if worse[k] <= MAX_WORSE_SHARE * n] or [max(mean)]
    best = max(allowed, key=lambda k: (round(mean[k], 6), k))
    return PessimismChoice(best, mean, departs, n, len(folds),
                           f"k {best:g}: gain {mean[best]:+.4f}, worse on {worse[best]} of {n} validation passages "
                           f"of {tracks.size} training tracks in {len(folds)} folds", worse)
