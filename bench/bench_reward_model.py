"""Reward-model benchmark: training throughput, inference speed, full retrain wall time.

Synthetic features (no audio needed): 5,000 judgements of 32-beat excerpts
(output lengths 24..40 beats), 3 judgements per comparison as the studio asks
by default (so about 1,667 pairs; ``--per-comparison 1`` gives 5,000 pairs),
10 % noise, 10 tracks; the default architecture (about 2.5 M parameters) and
training settings, ensemble of 3.

    python bench/bench_reward_model.py [--judgements 5000] [--threads 2] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from rlhf.reward_model import TrainingConfig, count_parameters, select_device, train_ensemble  # noqa: E402
from tests.rlhf.synthetic import synthetic_dataset, synthetic_edits  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judgements", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--per-comparison", type=int, default=3, help="judgements per comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    print(f"device {device}, {args.threads} threads, {count_parameters():,} parameters per member")

    ds = synthetic_dataset(0, n_judgements=args.judgements, n_tracks=10, noise=0.1,
                           per_comparison=args.per_comparison)
    config = TrainingConfig(n_members=args.members, n_threads=args.threads, device=args.device)
    result = train_ensemble(ds, config)
    epochs = sum(len(c.train_loss) for c in result.curves)
    print(f"full retrain: {args.judgements} judgements = {ds.n_pairs} pairs, {args.members} members, {epochs} epochs in total: "
          f"{result.seconds:.1f} s wall, {result.pairs_per_second:.0f} pairs/s trained, "
          f"validation accuracy {result.evaluation.accuracy:.3f}")

    import numpy as np

    edits, _ = synthetic_edits(np.random.default_rng(1), 4096, min_beats=32, max_beats=32)
    result.ensemble.predict(edits[:256])  # warm-up
    started = time.perf_counter()
    result.ensemble.predict(edits)
    seconds = time.perf_counter() - started
    print(f"inference: {len(edits) / seconds:.0f} edits/s (ensemble of {args.members}, 32-beat edits, batch 256)")


if __name__ == "__main__":
    main()
