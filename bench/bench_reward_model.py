"""Reward-model benchmark: training throughput, inference speed, full retrain wall time.

Synthetic features (no audio needed): 5,000 judgements of 32-beat excerpts
(output lengths 24..40 beats), 3 judgements per comparison as the studio asks
by default (so about 1,667 pairs; ``--per-comparison 1`` gives 5,000 pairs),
10 % noise, 10 tracks; the default architecture (about 2.5 M parameters) and
training settings, ensemble of 3.

    python bench/bench_reward_model.py [--judgements 5000] [--threads 2] [--device cpu|cuda] [--inference-only]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rlhf.learning.configs import TrainingConfig
from rlhf.learning.reward_model import RewardEnsemble, RewardModelConfig, RewardNet, count_parameters, select_device
from rlhf.learning.reward_training import train_ensemble
from tests.rlhf.synthetic import synthetic_dataset, synthetic_edits  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judgements", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--per-comparison", type=int, default=3, help="judgements per comparison")
    parser.add_argument("--inference-only", action="store_true", help="skip the retrain; time an untrained ensemble")
    parser.add_argument("--repeats", type=int, default=3, help="inference timings to take the best of")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    print(f"device {device}, {args.threads} threads, {count_parameters():,} parameters per member")

    if args.inference_only:
        # Inference cost does not depend on the weights: an untrained ensemble measures it.
        config = RewardModelConfig()
        torch.manual_seed(0)
        members = [RewardNet(config, np.zeros(config.n_features), np.ones(config.n_features)).eval()
                   for _ in range(args.members)]
        ensemble = RewardEnsemble(members=members, config=config).to(device)
    else:
        ds = synthetic_dataset(0, n_judgements=args.judgements, n_tracks=10, noise=0.1,
                               per_comparison=args.per_comparison)
        config = TrainingConfig(n_members=args.members, n_threads=args.threads, device=args.device)
        result = train_ensemble(ds, config)
        epochs = sum(len(c.train_loss) for c in result.curves)
        print(f"full retrain: {args.judgements} judgements = {ds.n_pairs} pairs, {args.members} members, "
              f"{epochs} epochs in total: {result.seconds:.1f} s wall, {result.pairs_per_second:.0f} pairs/s trained, "
              f"validation accuracy {result.evaluation.accuracy:.3f}, ECE {result.evaluation.ece:.3f}")
        ensemble = result.ensemble

    edits, _ = synthetic_edits(np.random.default_rng(1), 4096, min_beats=32, max_beats=32)
    ensemble.predict(edits[:256])  # warm-up
    best = np.inf
    for _ in range(args.repeats):  # best of several: the development machine is shared
        started = time.perf_counter()
        ensemble.predict(edits)
        best = min(best, time.perf_counter() - started)
    print(f"inference: {len(edits) / best:.0f} edits/s (ensemble of {args.members}, 32-beat edits, default batch, "
          f"best of {args.repeats}, bf16 {ensemble.use_bf16})")
    rollout = [synthetic_edits(np.random.default_rng(2 + i), 1, min_beats=n, max_beats=n)[0][0]
               for i, n in enumerate(np.clip(np.round(np.random.default_rng(2).gamma(1.3, 9.0, 104)), 1, 64).astype(int))]
    ensemble.predict(rollout)
    best = np.inf
    for _ in range(args.repeats):
        started = time.perf_counter()
        ensemble.predict(rollout)
        best = min(best, time.perf_counter() - started)
    print(f"inference, a PPO rollout's mix (104 edits of 1..64 beats, mean "
          f"{np.mean([e.n_beats for e in rollout]):.1f}): {1000 * best:.1f} ms = {len(rollout) / best:.0f} edits/s")


if __name__ == "__main__":
    main()
