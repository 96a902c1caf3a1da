"""The reward model: a transformer over an edit's output beats, its ensemble, and its checkpoints.

Pure module (torch + numpy, no Django).  The model gives each edit a reward ``r`` in
[-10, 10]; P(A preferred over B) is ``sigmoid(r_A - r_B)`` (targets:
``rlhf.learning.reward_data``; training: ``rlhf.learning.reward_training``).

Speed
-----
Inference (``RewardEnsemble.member_rewards``) runs frozen
copies whose encoders are bf16, in batches of one length where possible so PyTorch's
fused encoder kernel applies (see ``_ScoringCopies``), two (batch, member) forwards at a
time on a CPU with more than one torch thread (``_concurrent_forwards``; same bits).
"""
from __future__ import annotations

import copy
import functools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from editing.audio import N_AUDIO_FEATURES
from editing.edit import ACTION_SET_VERSION, MODEL_FEATURE_VERSION, N_ACTIONS, N_MODEL_FEATURES, scoring_windows
from rlhf.learning.reward_data import EditInput, RewardModelError

REWARD_BOUND = 10.0
# Edits per inference batch: 64 x 32 beats keeps a batch's bf16 activations (~4 MB at the
# 1024-wide feed-forward) in cache; measured 1.05-1.2x faster than 256 on 2 cores.
SCORING_BATCH = 64
CHECKPOINT_FORMAT = "reward-ensemble-v1"


class CheckpointMismatch(RewardModelError):
    """A checkpoint was trained on other features than this code computes."""


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


def bf16_autocast_available(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


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


def windowed(edits: Sequence[EditInput]) -> tuple[list[EditInput], np.ndarray]:
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


def pad_batch(edits: Sequence[EditInput], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
        self.use_bf16 = bf16_autocast_available(device)
        return self

    def member_rewards(self, edits: Sequence[EditInput], *, batch_size: int = SCORING_BATCH) -> np.ndarray:
        """Raw rewards per member.

        An edit longer than ``editing.edit.WINDOW_BEATS`` is read in windows and its reward is
        their mean (``windowed``), so time and memory grow linearly with its length.
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
        windows, owner = windowed(edits)
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
            feats, acts, padding = pad_batch([edits[i] for i in rows], self.device)
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


# --------------------------------------------------------------------------- checkpoints

def save_checkpoint(ensemble: RewardEnsemble, path: str | Path, *, extra: dict | None = None) -> None:
    """Write ``ensemble`` to ``path`` (a torch file holding plain tensors and dicts only)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "feature_version": ensemble.feature_version,
        "n_features": ensemble.config.n_features,
        # The action embedding reads action ids: a model of another action set would misread them.
        "action_set_version": ACTION_SET_VERSION,
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
        When the checkpoint's feature version, action set or input size differs from this code's
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
    # Files written before the action set was versioned embed the nine actions of "actions-v1".
    stored_actions = payload.get("action_set_version", "actions-v1")
    if stored_actions != ACTION_SET_VERSION:
        raise CheckpointMismatch(
            f"{path}: trained on action set {stored_actions!r}, this code has {ACTION_SET_VERSION!r} "
            f"({N_ACTIONS} actions); retrain the reward model"
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

