"""The learned reward: a transformer over an edit's output beats, trained from preferences.

Pure module (torch + numpy, no Django).  Read top to bottom: the targets that
judgements become, the data layout, the network, the ensemble, training,
evaluation, and checkpoints.

Targets (Bradley-Terry with confidence-shaped labels)
------------------------------------------------------
The model gives each edit a reward ``r`` in [-10, 10]; the probability that A is
preferred over B is ``sigmoid(r_A - r_B)``.  A judgement becomes a soft target
``P(A preferred)``:

==========  =====  =====  =====  =====  =====
confidence    1      2      3      4      5
P(chosen)   0.600  0.695  0.790  0.885  0.980
==========  =====  =====  =====  =====  =====

(linear from 0.6 to 0.98: a confidence-1 answer is barely better than a coin
flip, a confidence-5 answer is near-certain but never 1.0, so one mistaken
answer cannot drive a reward difference to infinity).  A tie is 0.5 whatever
its confidence.  Several judgements of one comparison are combined into one
pair whose target is the mean of their targets and whose loss weight is their
count.

Calibration
-----------
Preference probabilities are ``lapse / 2 + (1 - lapse) * sigmoid((r_A - r_B) / T)``,
averaged over members, with ``T`` and ``lapse`` fitted on held-out training tracks
(``fit_calibration``): annotators sometimes answer at random, so their agreement with
the better edit has a ceiling below 1 that a temperature alone cannot model.

Speed
-----
Training: pairs share edits, so a batch runs each distinct edit through the network
once; batches are built from pairs of similar length (length bucketing) so little of
the work is padding; on CPUs with bf16 support (and on CUDA) the forward pass runs
under bf16 autocast (about 2.5x faster on the 2-core development machine), weights and
optimiser state stay float32.  Inference (``RewardEnsemble.member_rewards``) runs frozen
copies whose encoders are bf16, in batches of one length where possible so PyTorch's
fused encoder kernel applies (see ``_ScoringCopies``), two (batch, member) forwards at a
time on a CPU with more than one torch thread (``_concurrent_forwards``; same bits).
"""
from __future__ import annotations

import copy
import functools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from editing.audio import N_AUDIO_FEATURES
from editing.edit import MODEL_FEATURE_VERSION, N_ACTIONS, N_MODEL_FEATURES, scoring_windows

REWARD_BOUND = 10.0
# Edits per inference batch: 64 x 32 beats keeps a batch's bf16 activations (~4 MB at the
# 1024-wide feed-forward) in cache; measured 1.05-1.2x faster than 256 on 2 cores.
SCORING_BATCH = 64
CHECKPOINT_FORMAT = "reward-ensemble-v1"
CONFIDENCE_LEVELS = (1, 2, 3, 4, 5)
_TARGET_LOW, _TARGET_HIGH = 0.6, 0.98


class RewardModelError(ValueError):
    """Base class: a reward-model operation refused, with the reason in the message."""


class CheckpointMismatch(RewardModelError):
    """A checkpoint was trained on other features than this code computes."""


class DatasetRefused(RewardModelError):
    """The preference dataset cannot train a meaningful model (empty, too small, one-sided)."""


# --------------------------------------------------------------------------- device

def select_device(preference: str | None = None) -> torch.device:
    """The one place that picks where models run: CUDA when present, else CPU.

    Parameters
    ----------
    preference : {"cpu", "cuda"} or None
        Force a device; ``"cuda"`` without a GPU raises instead of silently running on CPU.
    """
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" or (preference is None and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RewardModelError("device 'cuda' requested but torch sees no CUDA GPU")
        return torch.device("cuda")
    if preference is not None:
        raise RewardModelError(f"unknown device {preference!r}: expected 'cpu', 'cuda' or None")
    return torch.device("cpu")


def _bf16_autocast_available(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


# --------------------------------------------------------------------------- targets

def confidence_target(choice: str, confidence: int) -> float:
    """P(A preferred) that one judgement stands for (see the module table).

    Parameters
    ----------
    choice : {"a", "b", "tie"}
    confidence : int in 1..5
    """
    if confidence not in CONFIDENCE_LEVELS:
        raise RewardModelError(f"confidence {confidence!r} is outside 1..5")
    if choice == "tie":
        return 0.5
    p_chosen = _TARGET_LOW + (confidence - 1) * (_TARGET_HIGH - _TARGET_LOW) / 4
    if choice == "a":
        return p_chosen
    if choice == "b":
        return 1.0 - p_chosen
    raise RewardModelError(f"choice {choice!r} is not one of 'a', 'b', 'tie'")


# --------------------------------------------------------------------------- data

@dataclass(frozen=True)
class EditInput:
    """One edit as the model reads it.

    Attributes
    ----------
    features : np.ndarray [shape=(n_output_beats, 127)], float32
        ``editing.edit.model_input`` features.
    actions : np.ndarray [shape=(n_output_beats,)], int64
        Action id that produced each output beat.
    """

    features: np.ndarray
    actions: np.ndarray

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.shape[1] != N_MODEL_FEATURES:
            raise RewardModelError(
                f"edit features have shape {self.features.shape}, expected (n_output_beats, {N_MODEL_FEATURES})"
            )
        if self.actions.shape != (self.features.shape[0],):
            raise RewardModelError(
                f"edit actions have shape {self.actions.shape}, expected ({self.features.shape[0]},)"
            )
        if self.features.shape[0] == 0:
            raise RewardModelError("an edit with no output beats cannot be scored")

    @property
    def n_beats(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True)
class PreferenceDataset:
    """Comparisons as index pairs into a list of edits, one row per pair of edits.

    Attributes
    ----------
    edits : tuple of EditInput
    pair_a, pair_b : np.ndarray [shape=(n_pairs,)], int64
        Indices into ``edits``; ``pair_a < pair_b`` after combining.
    target : np.ndarray [shape=(n_pairs,)], float32
        Combined P(A preferred): the mean of the judgements' targets.
    share_a : np.ndarray [shape=(n_pairs,)], float32
        Share of the judgements that chose A (a tie counts one half): what ECE is measured against.
    weight : np.ndarray [shape=(n_pairs,)], float32
        Number of judgements combined in the row (the loss weight).
    group : np.ndarray [shape=(n_pairs,)], int64
        Track of the pair; train/validation never share a group.
    confidence : np.ndarray [shape=(n_pairs,)], int64
        Rounded mean confidence, for accuracy per confidence level.
    n_chose_first, n_chose_second : int
        Decided judgements that chose edit A / edit B *as their comparison presented
        them* (before combining), for the one-sided check.
    baseline_score : np.ndarray [shape=(n_edits,)], float32, or None
        A learning-free score per edit (the dense combined score) to compare against.
    """

    edits: tuple[EditInput, ...]
    pair_a: np.ndarray
    pair_b: np.ndarray
    target: np.ndarray
    share_a: np.ndarray
    weight: np.ndarray
    group: np.ndarray
    confidence: np.ndarray
    n_chose_first: int = 0
    n_chose_second: int = 0
    baseline_score: np.ndarray | None = None

    @property
    def n_pairs(self) -> int:
        return int(self.pair_a.shape[0])

    def subset(self, rows: np.ndarray) -> "PreferenceDataset":
        """The rows ``rows`` (the side counts describe the whole dataset and are kept)."""
        return replace(
            self, pair_a=self.pair_a[rows], pair_b=self.pair_b[rows], target=self.target[rows],
            share_a=self.share_a[rows], weight=self.weight[rows], group=self.group[rows],
            confidence=self.confidence[rows],
        )


def dataset_from_judgements(
    edits: Sequence[EditInput],
    judgements: Sequence[tuple[int, int, int, str, int]],
    *,
    baseline_score: np.ndarray | None = None,
) -> PreferenceDataset:
    """Combine judgements into one row per unordered pair of edits.

    A comparison and its sides-swapped repeat land in the same row (the repeat's
    target is flipped), so the row weight counts every judgement of the pair.

    Parameters
    ----------
    edits : sequence of EditInput
    judgements : sequence of (group, index of edit A, index of edit B, choice, confidence)
        ``choice`` is ``"a"``, ``"b"`` or ``"tie"`` relative to the comparison's A and B.
    baseline_score : np.ndarray [shape=(len(edits),)] or None
    """
    rows: dict[tuple[int, int], list] = {}
    n_first = n_second = 0
    for group, a, b, choice, confidence in judgements:
        target = confidence_target(choice, int(confidence))
        chose_a = {"a": 1.0, "b": 0.0, "tie": 0.5}[choice]
        n_first += choice == "a"
        n_second += choice == "b"
        a, b = int(a), int(b)
        if a > b:
            a, b, target, chose_a = b, a, 1.0 - target, 1.0 - chose_a
        entry = rows.setdefault((a, b), [int(group), [], [], []])
        entry[1].append(target)
        entry[2].append(chose_a)
        entry[3].append(int(confidence))
    keys = sorted(rows)
    return PreferenceDataset(
        edits=tuple(edits),
        pair_a=np.array([k[0] for k in keys], dtype=np.int64),
        pair_b=np.array([k[1] for k in keys], dtype=np.int64),
        target=np.array([np.mean(rows[k][1]) for k in keys], dtype=np.float32),
        share_a=np.array([np.mean(rows[k][2]) for k in keys], dtype=np.float32),
        weight=np.array([len(rows[k][1]) for k in keys], dtype=np.float32),
        group=np.array([rows[k][0] for k in keys], dtype=np.int64),
        confidence=np.array([int(round(np.mean(rows[k][3]))) for k in keys], dtype=np.int64),
        n_chose_first=n_first,
        n_chose_second=n_second,
        baseline_score=None if baseline_score is None else np.asarray(baseline_score, dtype=np.float32),
    )


def check_dataset(dataset: PreferenceDataset, *, min_pairs: int) -> None:
    """Refuse datasets that cannot teach a preference.

    One-sided means: no judgement chose a side (all ties), or every decided
    judgement chose the same *position* of its comparison (every answer "A",
    or every answer "B").  Judges who always pick one position tell nothing
    about the edits, and a model trained on that would learn the order of the
    pair instead of what sounds better.

    Raises
    ------
    DatasetRefused
    """
    if dataset.n_pairs == 0:
        raise DatasetRefused("the preference dataset is empty: no usable judgements")
    if dataset.n_pairs < min_pairs:
        raise DatasetRefused(
            f"the preference dataset has {dataset.n_pairs} compared pairs of edits, at least {min_pairs} needed"
        )
    decided = dataset.n_chose_first + dataset.n_chose_second
    if decided == 0:
        raise DatasetRefused("the preference dataset is one-sided: every judgement is a tie")
    if dataset.n_chose_first == 0 or dataset.n_chose_second == 0:
        side = "A" if dataset.n_chose_first else "B"
        raise DatasetRefused(
            f"the preference dataset is one-sided: all {decided} decided judgements chose edit {side}"
        )
    if np.unique(dataset.group).size < 2:
        raise DatasetRefused("the preference dataset covers one track: a track-wise validation split needs two")


def split_by_group(groups: np.ndarray, *, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, validation) with no group (track) on both sides.

    Whole groups are drawn in a seeded random order until the validation side
    holds at least ``validation_fraction`` of the rows; at least one group goes
    to each side.
    """
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(unique)
    counts = {g: int(np.sum(groups == g)) for g in unique}
    wanted = validation_fraction * groups.size
    val_groups: list = []
    taken = 0
    for g in order[:-1]:
        if taken >= wanted and val_groups:
            break
        val_groups.append(g)
        taken += counts[g]
    is_val = np.isin(groups, val_groups)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


# --------------------------------------------------------------------------- network

@dataclass(frozen=True)
class RewardModelConfig:
    """Architecture of one ensemble member (about 2.6 M parameters by default)."""

    n_features: int = N_MODEL_FEATURES
    n_actions: int = N_ACTIONS
    d_model: int = 256
    n_heads: int = 4
    n_layers: int = 3
    ff_dim: int = 1024
    dropout: float = 0.1


@functools.lru_cache(maxsize=256)  # one table per (length, width); rebuilding it cost ~5 % of a small forward pass
def _sinusoidal_positions(n: int, d: int) -> torch.Tensor:
    # A normal tensor even when first asked for under inference mode, so training can reuse it.
    with torch.inference_mode(False):
        position = torch.arange(n, dtype=torch.float32)[:, None]
        rate = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
        table = torch.zeros(n, d)
        table[:, 0::2] = torch.sin(position * rate)
        table[:, 1::2] = torch.cos(position * rate)
    return table


class RewardNet(nn.Module):
    """Per-beat features + action embedding -> transformer encoder -> masked mean -> bounded scalar."""

    def __init__(self, config: RewardModelConfig, feature_mean: np.ndarray, feature_std: np.ndarray):
        super().__init__()
        self.config = config
        # Normalisation lives in the module so a checkpoint carries the statistics it was trained with.
        self.register_buffer("feature_mean", torch.as_tensor(feature_mean, dtype=torch.float32))
        self.register_buffer("feature_std", torch.as_tensor(feature_std, dtype=torch.float32))
        self.input_proj = nn.Linear(config.n_features, config.d_model)
        self.action_embedding = nn.Embedding(config.n_actions, config.d_model)
        layer = nn.TransformerEncoderLayer(
            config.d_model, config.n_heads, config.ff_dim, config.dropout,
            batch_first=True, norm_first=True, activation="gelu",
        )
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Sequential(nn.Linear(config.d_model, config.d_model), nn.GELU(), nn.Linear(config.d_model, 1))

    def forward(self, features: torch.Tensor, actions: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """Rewards of a padded batch.

        Parameters
        ----------
        features : Tensor [shape=(batch, n_beats, 127)], float32
        actions : Tensor [shape=(batch, n_beats)], int64
        padding : Tensor [shape=(batch, n_beats)], bool, True where a beat is padding

        Returns
        -------
        Tensor [shape=(batch,)], float32 in [-10, 10]
        """
        x = self.encoder(self.embed(features, actions), src_key_padding_mask=padding)
        keep = (~padding).unsqueeze(-1).to(x.dtype)
        return self.readout((self.norm(x) * keep).sum(1) / keep.sum(1).clamp(min=1.0))

    def embed(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Normalised features + action embedding + positions, shape (batch, n_beats, d_model)."""
        x = (features - self.feature_mean) / self.feature_std
        x = self.input_proj(x) + self.action_embedding(actions)
        return x + _sinusoidal_positions(x.shape[1], x.shape[2]).to(x.device, x.dtype)

    def readout(self, pooled: torch.Tensor) -> torch.Tensor:
        """Bounded rewards, shape (batch,), float32, from pooled encodings of shape (batch, d_model)."""
        raw = self.head(pooled).squeeze(-1).float()
        # tanh keeps rewards bounded for the policy; /10 keeps it near-linear for ordinary values.
        return REWARD_BOUND * torch.tanh(raw / REWARD_BOUND)


def count_parameters(config: RewardModelConfig = RewardModelConfig()) -> int:
    net = RewardNet(config, np.zeros(config.n_features), np.ones(config.n_features))
    return sum(p.numel() for p in net.parameters())


# The edit-aware "seam" column of the model input (``editing.edit.edit_features``, column 0).
_SEAM_COLUMN = N_AUDIO_FEATURES


def _windowed(edits: Sequence[EditInput]) -> tuple[list[EditInput], np.ndarray]:
    """Each edit cut into the windows the model reads (``editing.edit.scoring_windows``).

    An edit's reward is the mean of its windows' rewards; an edit of up to
    ``editing.edit.WINDOW_BEATS`` beats is one window, itself.  Returns the windows and the
    index of the edit each belongs to, int64 (n_windows,).
    """
    windows: list[EditInput] = []
    owner: list[int] = []
    for i, edit in enumerate(edits):
        spans = scoring_windows(edit.n_beats, np.flatnonzero(edit.features[:, _SEAM_COLUMN] > 0))
        if len(spans) == 1:
            windows.append(edit)
        else:
            windows.extend(EditInput(edit.features[a:b], edit.actions[a:b]) for a, b in spans)
        owner.extend([i] * len(spans))
    return windows, np.asarray(owner, dtype=np.int64)


def _pad(edits: Sequence[EditInput], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n_max = max(e.n_beats for e in edits)
    feats = np.zeros((len(edits), n_max, N_MODEL_FEATURES), dtype=np.float32)
    acts = np.zeros((len(edits), n_max), dtype=np.int64)
    padding = np.ones((len(edits), n_max), dtype=bool)
    for i, e in enumerate(edits):
        feats[i, : e.n_beats] = e.features
        acts[i, : e.n_beats] = e.actions
        padding[i, : e.n_beats] = False
    return (torch.from_numpy(feats).to(device), torch.from_numpy(acts).to(device), torch.from_numpy(padding).to(device))


# --------------------------------------------------------------------------- ensemble

@dataclass
class RewardEnsemble:
    """Members trained on bootstraps of the data; their spread is the uncertainty.

    ``reward_mean`` / ``reward_std`` are the ensemble-mean reward statistics over
    a fixed reference set of edits (see ``set_normalization``), so that
    ``normalized = (reward - reward_mean) / reward_std`` is comparable between versions.
    """

    members: list[RewardNet]
    config: RewardModelConfig
    feature_version: str = MODEL_FEATURE_VERSION
    reward_mean: float = 0.0
    reward_std: float = 1.0
    # Post-hoc calibration of preference probabilities (see ``fit_calibration``); rewards are unaffected.
    temperature: float = 1.0  # divides reward differences
    lapse: float = 0.0  # share of answers modelled as coin flips
    use_bf16: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _scoring: "_ScoringCopies | None" = field(default=None, init=False, repr=False, compare=False)

    def to(self, device: torch.device) -> "RewardEnsemble":
        self.members = [m.to(device) for m in self.members]
        self.device = device
        self.use_bf16 = _bf16_autocast_available(device)
        return self

    def member_rewards(self, edits: Sequence[EditInput], *, batch_size: int = SCORING_BATCH) -> np.ndarray:
        """Raw rewards per member.

        An edit longer than ``editing.edit.WINDOW_BEATS`` is read in windows and its reward is
        their mean (``_windowed``), so time and memory grow linearly with its length.
        Edits are scored in batches of similar length (``_length_batches_for_scoring``);
        a batch of one length runs without a padding mask, so the encoder takes PyTorch's
        fused inference kernel (see ``_ScoringCopies``).  On a CPU with more than one torch
        thread, the (batch, member) forwards run two at a time (``_concurrent_forwards``);
        every forward is the same computation as when they run one by one, so the rewards
        are bit for bit the same.

        Returns
        -------
        np.ndarray [shape=(n_members, len(edits))], float32 in [-10, 10]
        """
        if not edits:
            return np.zeros((len(self.members), 0), dtype=np.float32)
        windows, owner = _windowed(edits)
        if len(windows) == len(edits):
            return self._window_rewards(edits, batch_size)
        per_window = self._window_rewards(windows, batch_size)
        counts = np.bincount(owner, minlength=len(edits)).astype(np.float32)
        out = np.zeros((len(self.members), len(edits)), dtype=np.float32)
        for k in range(len(self.members)):
            out[k] = np.bincount(owner, weights=per_window[k], minlength=len(edits)) / counts
        return out

    def _window_rewards(self, edits: Sequence[EditInput], batch_size: int) -> np.ndarray:
        """Raw rewards per member of inputs read whole, shape (n_members, len(edits))."""
        out = np.zeros((len(self.members), len(edits)), dtype=np.float32)
        nets = self._scoring_copies()
        lengths = np.array([e.n_beats for e in edits])
        forwards = []
        for rows in _length_batches_for_scoring(lengths, batch_size):
            feats, acts, padding = _pad([edits[i] for i in rows], self.device)
            if not bool(padding.any()):
                padding = None
            forwards.extend((k, rows, feats, acts, padding) for k in range(len(nets.members)))
        n_threads = torch.get_num_threads()

        def run(forward: tuple) -> None:
            k, rows, feats, acts, padding = forward
            # A worker thread takes the caller's thread count, so each forward runs the kernels it
            # would run in the caller (their results depend on it); inference mode is per thread.
            if torch.get_num_threads() != n_threads:
                torch.set_num_threads(n_threads)
            with torch.inference_mode():
                out[k, rows] = nets.score(nets.members[k], feats, acts, padding).cpu().numpy()

        workers = _concurrent_forwards(self.device, n_threads, len(forwards))
        if workers == 1:
            for forward in forwards:
                run(forward)
        else:
            # Largest first, so the two workers finish together.
            forwards.sort(key=lambda f: -f[2].shape[0] * f[2].shape[1])
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reward-forward") as pool:
                for done in [pool.submit(run, forward) for forward in forwards]:
                    done.result()
        return out

    def _scoring_copies(self) -> "_ScoringCopies":
        fingerprint = _ScoringCopies.fingerprint(self.members, self.device, self.use_bf16)
        if self._scoring is None or self._scoring.key != fingerprint:
            self._scoring = _ScoringCopies(self.members, self.use_bf16, fingerprint)
        return self._scoring

    def predict(self, edits: Sequence[EditInput], *, batch_size: int = SCORING_BATCH) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble-mean reward and member spread (standard deviation), both shape (len(edits),)."""
        rewards = self.member_rewards(edits, batch_size=batch_size)
        return rewards.mean(0), rewards.std(0)

    def normalize(self, rewards: np.ndarray) -> np.ndarray:
        return (rewards - self.reward_mean) / self.reward_std

    def set_normalization(self, reference_edits: Sequence[EditInput]) -> None:
        """Record mean and spread of the ensemble reward over ``reference_edits``."""
        if not reference_edits:
            raise RewardModelError("reward normalisation needs at least one reference edit")
        mean, _ = self.predict(reference_edits)
        self.reward_mean = float(mean.mean())
        # A spread below 1e-3 would blow normalised rewards up: it means the model is constant.
        self.reward_std = float(max(mean.std(), 1e-3))

    def preference_probability(self, edits: Sequence[EditInput], pair_a: np.ndarray, pair_b: np.ndarray) -> np.ndarray:
        """P(A preferred) per pair: ``lapse / 2 + (1 - lapse) * mean over members of sigmoid((r_A - r_B) / temperature)``."""
        rewards = self.member_rewards(edits)
        return _pair_probability(rewards, pair_a, pair_b, self.temperature, self.lapse)


class _ScoringCopies:
    """Frozen inference copies of an ensemble's members, with the encoders in bf16 where supported.

    Why copies: autocast re-casts every weight and activation on each call (a fifth to a
    third of the CPU time in profiles) and disables the fused encoder kernel
    (``torch._transformer_encoder_layer_fwd``); a bf16 encoder run without autocast and
    without grad takes that kernel.  With the length batching of
    ``_length_batches_for_scoring``, measured against the former autocast path on the
    2-core development machine: 1.3x the edits/s on 32-beat edits, 2.7x on a PPO rollout's
    mix of lengths.  Rewards differ from float32 by a few 1e-3.  The embedding, final norm
    and head stay float32 (cheap).  Copies are rebuilt whenever a member's weights change
    (tracked by the tensors' in-place version counters), so they never go stale.
    """

    def __init__(self, members: Sequence[RewardNet], use_bf16: bool, key: tuple) -> None:
        self.key = key
        self.dtype = torch.bfloat16 if use_bf16 else torch.float32
        self.members = []
        for member in members:
            net = copy.deepcopy(member).eval().requires_grad_(False)
            net.encoder.to(self.dtype)
            self.members.append(net)

    @staticmethod
    def fingerprint(members: Sequence[RewardNet], device: torch.device, use_bf16: bool) -> tuple:
        return (str(device), use_bf16, tuple((id(t), t._version) for m in members for t in (*m.parameters(), *m.buffers())))

    def score(self, net: RewardNet, features: torch.Tensor, actions: torch.Tensor,
              padding: torch.Tensor | None) -> torch.Tensor:
        """Rewards of a batch, shape (batch,), float32; ``padding`` None when no beat is padding."""
        x = net.encoder(net.embed(features, actions).to(self.dtype), src_key_padding_mask=padding)
        if padding is None:
            return net.readout(net.norm(x.float()).mean(1))
        keep = (~padding).unsqueeze(-1).float()
        return net.readout((net.norm(x.float()) * keep).sum(1) / keep.sum(1))


def _concurrent_forwards(device: torch.device, n_threads: int, n_forwards: int) -> int:
    """How many scoring forwards run at once: two on a CPU with more than one torch thread, else one.

    Each forward alternates large kernels with small ones (softmax, norms, the Python between
    them) that keep few cores busy; a second forward in flight fills those gaps.  Measured on
    the 2-core development machine with 2 torch threads, for a PPO rollout's ~43 edits: 2.46-2.50
    against 2.65 ms per edit one at a time when the machine is otherwise idle, and 3.3-5.9
    against 4.1-22.7 ms when another process keeps a core busy (one team of threads waiting at
    a barrier for a preempted thread no longer stalls all the scoring).  On CUDA the kernels
    queue on one stream anyway.
    """
    if device.type != "cpu" or n_threads < 2 or n_forwards < 2:
        return 1
    return 2


# One forward call of a member costs about as much as this many beats of work, whatever
# its size (measured on the 2-core development machine: ~1 ms per call, mostly streaming
# the 5 MB of bf16 weights, against ~15 us per beat).
_CALL_COST_BEATS = 64


def _length_batches_for_scoring(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Row indices of ``lengths`` cut into batches that are cheapest to score.

    Edits of one length share a batch without padding; neighbouring lengths are merged
    (padded to the longest) when the padding costs less than another forward call.  The
    split minimises ``calls * _CALL_COST_BEATS + padded beats`` exactly, by dynamic
    programming over the distinct lengths (at most 128, so at most ~8,000 steps).
    A policy rollout's ~100 edits of 1..64 beats thus take a handful of calls instead of
    one per length, and 4,096 edits of one length take 16 unpadded calls.
    """
    order = np.argsort(lengths, kind="stable")
    values, starts, counts = np.unique(lengths[order], return_index=True, return_counts=True)
    k = values.size
    best = np.full(k + 1, np.inf)
    best[0] = 0.0
    first = np.zeros(k + 1, dtype=np.int64)  # first distinct length of the last group ending at j
    for j in range(1, k + 1):
        n = 0
        for i in range(j - 1, -1, -1):
            n += int(counts[i])
            cost = best[i] + math.ceil(n / batch_size) * _CALL_COST_BEATS + n * int(values[j - 1])
            if cost < best[j]:
                best[j], first[j] = cost, i
    groups = []
    j = k
    while j > 0:
        i = int(first[j])
        groups.append(order[starts[i] : starts[j - 1] + counts[j - 1]])
        j = i
    return [group[s : s + batch_size] for group in reversed(groups) for s in range(0, group.size, batch_size)]


def _pair_probability(
    rewards: np.ndarray, pair_a: np.ndarray, pair_b: np.ndarray, temperature: float, lapse: float = 0.0,
) -> np.ndarray:
    # Members' probabilities are averaged (not their rewards): the ensemble is a mixture of opinions.
    diff = (rewards[:, pair_a] - rewards[:, pair_b]) / temperature
    return 0.5 * lapse + (1.0 - lapse) * (1.0 / (1.0 + np.exp(-diff))).mean(0)


def _weighted_bt_loss(p: np.ndarray, ds: PreferenceDataset) -> float:
    eps = 1e-6
    return float(-np.average(ds.target * np.log(p + eps) + (1 - ds.target) * np.log(1 - p + eps), weights=ds.weight))


_TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(4.0), 89))
_LAPSES = np.linspace(0.0, 0.5, 51)


@dataclass(frozen=True)
class Calibration:
    """How reward differences become preference probabilities (see ``fit_calibration``)."""

    temperature: float
    lapse: float


def fit_calibration(ensemble: RewardEnsemble, ds: PreferenceDataset) -> Calibration:
    """Temperature and lapse that minimise the weighted BT loss on ``ds`` (grid search).

    ``P(A) = lapse / 2 + (1 - lapse) * sigmoid((r_A - r_B) / temperature)``: the lapse is
    the share of answers that carry no preference (a random answer, a low-confidence
    guess), as in Christiano et al. (2017), who model a 10 % chance that the human answers
    uniformly at random.  Why not temperature alone: annotators who sometimes answer at
    random agree with the better edit at most ``1 - lapse / 2`` of the time however clear
    the difference, and the confidence-shaped targets cap even a unanimous pair at 0.98.
    A logistic curve cannot fit that ceiling and a steep rise below it at once: the
    single temperature that fits the clear pairs leaves the model under-confident on the
    middle ones (measured on simulated judgements with 10 % noise: 0.65 predicted where
    annotators agreed 0.82 of the time), whatever data it is fitted on.

    Fitted on held-out training tracks, never on the validation pairs the metrics are
    computed on.  Temperatures are on a log grid over [0.05, 4], lapses on [0, 0.5].
    """
    rewards = ensemble.member_rewards(ds.edits)
    diff = rewards[:, ds.pair_a] - rewards[:, ds.pair_b]
    best = (math.inf, 1.0, 0.0)
    for t in _TEMPERATURES:
        sig = (1.0 / (1.0 + np.exp(-diff / t))).mean(0)
        for lapse in _LAPSES:
            loss = _weighted_bt_loss(0.5 * lapse + (1.0 - lapse) * sig, ds)
            if loss < best[0]:
                best = (loss, float(t), float(lapse))
    return Calibration(temperature=best[1], lapse=best[2])


def fit_temperature(ensemble: RewardEnsemble, ds: PreferenceDataset) -> float:
    """The temperature of ``fit_calibration`` (kept for callers that predate the lapse)."""
    return fit_calibration(ensemble, ds).temperature


# --------------------------------------------------------------------------- training

@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters of one retrain; stored with the version."""

    seed: int = 0
    n_members: int = 3
    bootstrap: bool = True
    max_epochs: int = 5
    patience: int = 2
    batch_pairs: int = 64
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    validation_fraction: float = 0.2
    calibration_fraction: float = 0.15
    # Early stopping picks each member's epoch on a split of its own (carved from the training
    # groups), so the reported validation accuracy comes from pairs nothing was selected on.
    selection_fraction: float = 0.15
    min_pairs: int = 20
    n_threads: int = 2
    device: str | None = None


@dataclass(frozen=True)
class MemberCurve:
    train_loss: list[float]
    val_loss: list[float]  # on the selection split, per epoch (empty when there was none)
    best_epoch: int


@dataclass(frozen=True)
class Evaluation:
    """Validation metrics of an ensemble (all fractions in [0, 1]; ``n`` counts decided pairs)."""

    accuracy: float
    loss: float
    ece: float  # against the combined confidence-shaped targets (what the model is trained to predict)
    ece_choices: float  # against the share of answers that chose each side
    accuracy_by_confidence: dict[str, float | None]
    baseline_accuracy: float | None
    n_pairs: int
    n_decided: int
    # The calibration in force when the metrics were computed (``fit_calibration``).
    temperature: float = 1.0
    lapse: float = 0.0


@dataclass(frozen=True)
class TrainingResult:
    ensemble: RewardEnsemble
    evaluation: Evaluation
    curves: list[MemberCurve]
    train_rows: np.ndarray
    calibration_rows: np.ndarray
    validation_rows: np.ndarray
    seconds: float
    pairs_per_second: float
    # Rows early stopping chose epochs on (empty: too few groups to spare, every member ran max_epochs).
    selection_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def _feature_stats(edits: Sequence[EditInput], used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.concatenate([edits[i].features for i in used], axis=0).astype(np.float64)
    mean = stacked.mean(0)
    # Constant columns (one-hots absent from the data) would divide by zero.
    std = np.maximum(stacked.std(0), 1e-3)
    return mean.astype(np.float32), std.astype(np.float32)


def _length_batches(ds: PreferenceDataset, rows: np.ndarray, batch_pairs: int, rng: np.random.Generator) -> list[np.ndarray]:
    # Pairs sorted by length (with a random tie-break) then cut into batches: similar
    # lengths share a batch, so padding is small; batch order is shuffled each epoch.
    lengths = np.array([max(ds.edits[ds.pair_a[r]].n_beats, ds.edits[ds.pair_b[r]].n_beats) for r in rows])
    order = rows[np.lexsort((rng.random(rows.size), lengths))]
    batches = [order[i : i + batch_pairs] for i in range(0, order.size, batch_pairs)]
    rng.shuffle(batches)
    return batches


def _batch_loss(
    model: RewardNet, ds: PreferenceDataset, rows: np.ndarray, device: torch.device, use_bf16: bool,
) -> tuple[torch.Tensor, float]:
    a, b = ds.pair_a[rows], ds.pair_b[rows]
    unique, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    windows, owner = _windowed([ds.edits[i] for i in unique])
    feats, acts, padding = _pad(windows, device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        rewards = model(feats, acts, padding)
    if len(windows) != unique.size:  # an edit's reward is the mean of its windows'
        index = torch.from_numpy(owner).to(device)
        total = torch.zeros(unique.size, device=device, dtype=rewards.dtype).index_add(0, index, rewards)
        rewards = total / torch.bincount(index, minlength=unique.size).to(rewards.dtype)
    inv = torch.from_numpy(inverse).to(device)
    logits = rewards[inv[: rows.size]] - rewards[inv[rows.size :]]
    target = torch.from_numpy(ds.target[rows]).to(device)
    weight = torch.from_numpy(ds.weight[rows]).to(device)
    per_pair = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (per_pair * weight).sum() / weight.sum(), float(weight.sum())


@torch.no_grad()
def _validation_loss(model: RewardNet, ds: PreferenceDataset, rows: np.ndarray, device: torch.device, use_bf16: bool) -> float:
    model.eval()
    total, weight = 0.0, 0.0
    for start in range(0, rows.size, 256):
        batch = rows[start : start + 256]
        loss, w = _batch_loss(model, ds, batch, device, use_bf16)
        total += float(loss) * w
        weight += w
    return total / weight


def train_ensemble(
    dataset: PreferenceDataset,
    config: TrainingConfig = TrainingConfig(),
    *,
    model_config: RewardModelConfig = RewardModelConfig(),
    warm_start: RewardEnsemble | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainingResult:
    """Train an ensemble with a group-wise split and early stopping; deterministic from ``config.seed``.

    Four disjoint sets of groups (tracks, or excerpts when tracks are few): training, calibration,
    selection (early stopping) and validation (the reported metrics, never selected on).

    Parameters
    ----------
    dataset : PreferenceDataset
    config : TrainingConfig
    warm_start : RewardEnsemble or None
        Members start from these weights (and keep their feature statistics).
    progress : callable(stage, done, total) or None
        Called after every batch with ``stage`` like ``"member 1/3 epoch 2"``.

    Raises
    ------
    DatasetRefused
        Before any training, when ``check_dataset`` refuses the data.
    CheckpointMismatch
        When ``warm_start`` was trained on another feature version or architecture.
    """
    check_dataset(dataset, min_pairs=config.min_pairs)
    if warm_start is not None:
        if warm_start.feature_version != MODEL_FEATURE_VERSION:
            raise CheckpointMismatch(
                f"warm start was trained on features {warm_start.feature_version!r}, "
                f"this code computes {MODEL_FEATURE_VERSION!r}"
            )
        if warm_start.config != model_config:
            raise CheckpointMismatch(f"warm start architecture {warm_start.config} differs from {model_config}")
    started = time.perf_counter()
    torch.set_num_threads(config.n_threads)
    torch.manual_seed(config.seed)
    device = select_device(config.device)
    use_bf16 = _bf16_autocast_available(device)
    rng = np.random.default_rng(config.seed)

    train_rows, val_rows = split_by_group(dataset.group, validation_fraction=config.validation_fraction, seed=config.seed)
    # Temperature calibration needs pairs the members never trained on and the metrics never see:
    # a slice of the training tracks (none when training covers a single track).
    calibration_rows = np.zeros(0, dtype=np.int64)
    if config.calibration_fraction > 0 and np.unique(dataset.group[train_rows]).size >= 2:
        fit, calib = split_by_group(dataset.group[train_rows], validation_fraction=config.calibration_fraction,
                                    seed=config.seed + 1)
        train_rows, calibration_rows = train_rows[fit], train_rows[calib]
    selection_rows = np.zeros(0, dtype=np.int64)
    if config.selection_fraction > 0 and np.unique(dataset.group[train_rows]).size >= 2:
        fit, select = split_by_group(dataset.group[train_rows], validation_fraction=config.selection_fraction,
                                     seed=config.seed + 2)
        train_rows, selection_rows = train_rows[fit], train_rows[select]
    if warm_start is not None:
        mean, std = (warm_start.members[0].feature_mean.cpu().numpy(), warm_start.members[0].feature_std.cpu().numpy())
    else:
        used = np.unique(np.concatenate([dataset.pair_a[train_rows], dataset.pair_b[train_rows]]))
        mean, std = _feature_stats(dataset.edits, used)

    members: list[RewardNet] = []
    curves: list[MemberCurve] = []
    pairs_seen = 0
    for k in range(config.n_members):
        torch.manual_seed(config.seed * 1000 + k)
        model = RewardNet(model_config, mean, std)
        if warm_start is not None:
            model.load_state_dict(warm_start.members[k % len(warm_start.members)].state_dict())
        model.to(device)
        member_rows = rng.choice(train_rows, size=train_rows.size, replace=True) if config.bootstrap else train_rows
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        best_loss, best_state, best_epoch, stale = math.inf, copy.deepcopy(model.state_dict()), -1, 0
        train_curve: list[float] = []
        val_curve: list[float] = []
        for epoch in range(config.max_epochs):
            model.train()
            batches = _length_batches(dataset, member_rows, config.batch_pairs, rng)
            total, weight = 0.0, 0.0
            for i, batch in enumerate(batches):
                loss, w = _batch_loss(model, dataset, batch, device, use_bf16)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                total += float(loss.detach()) * w
                weight += w
                pairs_seen += batch.size
                if progress is not None:
                    progress(f"member {k + 1}/{config.n_members} epoch {epoch + 1}", i + 1, len(batches))
            train_curve.append(total / weight)
            if not selection_rows.size:  # nothing to select on: the last epoch stands
                best_state, best_epoch = copy.deepcopy(model.state_dict()), epoch
                continue
            val_loss = _validation_loss(model, dataset, selection_rows, device, use_bf16)
            val_curve.append(val_loss)
            if val_loss < best_loss - 1e-4:
                best_loss, best_state, best_epoch, stale = val_loss, copy.deepcopy(model.state_dict()), epoch, 0
            else:
                stale += 1
                if stale >= config.patience:
                    break
        model.load_state_dict(best_state)
        model.eval()
        members.append(model)
        curves.append(MemberCurve(train_loss=train_curve, val_loss=val_curve, best_epoch=best_epoch))

    ensemble = RewardEnsemble(members=members, config=model_config, use_bf16=use_bf16, device=device)
    if calibration_rows.size:
        calibration = fit_calibration(ensemble, dataset.subset(calibration_rows))
        ensemble.temperature, ensemble.lapse = calibration.temperature, calibration.lapse
    evaluation = evaluate(ensemble, dataset.subset(val_rows))
    seconds = time.perf_counter() - started
    return TrainingResult(
        ensemble=ensemble, evaluation=evaluation, curves=curves, train_rows=train_rows, calibration_rows=calibration_rows,
        validation_rows=val_rows, selection_rows=selection_rows,
        seconds=seconds, pairs_per_second=pairs_seen / seconds,
    )


# --------------------------------------------------------------------------- evaluation

def expected_calibration_error(p_a: np.ndarray, share_a: np.ndarray, weight: np.ndarray, *, n_bins: int = 5) -> float:
    """ECE of the predicted winner's probability against how often annotators agreed with it.

    The usual confidence ECE (Guo et al. 2017) for a two-way choice: each pair's
    confidence is ``q = max(p, 1 - p)``, its observed agreement the share of its
    judgements that chose the predicted winner (ties count one half); pairs
    are put in ``n_bins`` equal-width bins over q in [0.5, 1].

    Parameters
    ----------
    p_a : np.ndarray [shape=(n,)]
        Predicted P(A preferred).
    share_a : np.ndarray [shape=(n,)]
        Observed P(A): the share of judgements that chose A, or the combined target.
    weight : np.ndarray [shape=(n,)]
        Judgements per pair (a pair with more judgements counts more).

    Returns
    -------
    float
        ``sum_bins (weight in bin / total weight) * |mean q - mean agreement|``.
    """
    q = np.maximum(p_a, 1.0 - p_a)
    agree = np.where(p_a >= 0.5, share_a, 1.0 - share_a)
    bins = np.minimum(((q - 0.5) * 2 * n_bins).astype(int), n_bins - 1)
    total = weight.sum()
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        w = weight[in_bin].sum()
        if w == 0:
            continue
        gap = abs(np.average(q[in_bin], weights=weight[in_bin]) - np.average(agree[in_bin], weights=weight[in_bin]))
        ece += w / total * gap
    return float(ece)


def evaluate(ensemble: RewardEnsemble, ds: PreferenceDataset) -> Evaluation:
    """Accuracy, loss, ECE and per-confidence accuracy of ``ensemble`` on the pairs of ``ds``.

    Accuracy counts decided pairs (combined target != 0.5): the model is right
    when it puts the side the combined target favours above 0.5.

    ``ece`` compares the predicted P(A) with the combined confidence-shaped
    target, the probability the model is trained to output.  ``ece_choices``
    compares it with the raw share of A answers; it is larger by design when
    annotators are themselves inconsistent: a pair answered "A, confidence 3"
    by 80 % of annotators has a mean target of 0.8 * 0.79 + 0.2 * 0.21 = 0.67,
    not 0.8, since the confidence already discounts each answer.
    """
    if ds.n_pairs == 0:
        raise RewardModelError("cannot evaluate on an empty validation set")
    p = ensemble.preference_probability(ds.edits, ds.pair_a, ds.pair_b)
    decided = ds.target != 0.5
    label = ds.target > 0.5
    correct = (p > 0.5) == label
    loss = _weighted_bt_loss(p, ds)
    by_conf: dict[str, float | None] = {}
    for level in CONFIDENCE_LEVELS:
        rows = decided & (ds.confidence == level)
        by_conf[str(level)] = float(correct[rows].mean()) if rows.any() else None
    baseline = None
    if ds.baseline_score is not None and decided.any():
        sa, sb = ds.baseline_score[ds.pair_a], ds.baseline_score[ds.pair_b]
        # Equal dense scores give no preference: count half right, as a coin flip would.
        base_correct = np.where(sa == sb, 0.5, ((sa > sb) == label).astype(float))
        baseline = float(base_correct[decided].mean())
    return Evaluation(
        accuracy=float(correct[decided].mean()) if decided.any() else float("nan"),
        loss=float(loss),
        ece=expected_calibration_error(p, ds.target, ds.weight),
        ece_choices=expected_calibration_error(p, ds.share_a, ds.weight),
        accuracy_by_confidence=by_conf,
        baseline_accuracy=baseline,
        n_pairs=ds.n_pairs,
        n_decided=int(decided.sum()),
        temperature=ensemble.temperature,
        lapse=ensemble.lapse,
    )


# --------------------------------------------------------------------------- checkpoints

def save_checkpoint(ensemble: RewardEnsemble, path: str | Path, *, extra: dict | None = None) -> None:
    """Write ``ensemble`` to ``path`` (a torch file holding plain tensors and dicts only)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "feature_version": ensemble.feature_version,
        "n_features": ensemble.config.n_features,
        "config": asdict(ensemble.config),
        "reward_mean": ensemble.reward_mean,
        "reward_std": ensemble.reward_std,
        "temperature": ensemble.temperature,
        "lapse": ensemble.lapse,
        "members": [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in ensemble.members],
        "extra": extra or {},
    }
    with open(path, "wb") as fh:
        torch.save(payload, fh)


def load_checkpoint(path: str | Path, *, device: torch.device | None = None) -> RewardEnsemble:
    """Read a checkpoint written by ``save_checkpoint``.

    Raises
    ------
    CheckpointMismatch
        When the checkpoint's feature version or input size differs from this code's
        (the message names both), or the file is not a reward-ensemble checkpoint.
    """
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatch(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    if payload["feature_version"] != MODEL_FEATURE_VERSION or payload["n_features"] != N_MODEL_FEATURES:
        raise CheckpointMismatch(
            f"{path}: trained on features {payload['feature_version']!r} ({payload['n_features']} per beat), "
            f"this code computes {MODEL_FEATURE_VERSION!r} ({N_MODEL_FEATURES} per beat); retrain the reward model"
        )
    config = RewardModelConfig(**payload["config"])
    if config.n_actions != N_ACTIONS:
        raise CheckpointMismatch(f"{path}: trained with {config.n_actions} actions, this code has {N_ACTIONS}")
    members = []
    for state in payload["members"]:
        net = RewardNet(config, state["feature_mean"].numpy(), state["feature_std"].numpy())
        net.load_state_dict(state)
        net.eval()
        members.append(net)
    ensemble = RewardEnsemble(
        members=members, config=config, feature_version=payload["feature_version"],
        reward_mean=float(payload["reward_mean"]), reward_std=float(payload["reward_std"]),
        temperature=float(payload["temperature"]),
        # Files written before the lapse existed were calibrated by temperature alone: lapse 0 is their exact model.
        lapse=float(payload.get("lapse", 0.0)),
    )
    return ensemble.to(device or select_device())

