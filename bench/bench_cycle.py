"""Benchmark: wall time of full retrain cycles at default sizes (target: under 15 minutes each).

Builds a throw-away studio (SQLite and storage in a temporary folder): ingests the
demo corpus, proposes baseline comparisons, lets simulated annotators judge them,
then runs ``--cycles`` cycles in this process with the ``CYCLE_*`` defaults (the
first trains a policy from scratch, later ones fine-tune it), simulated annotators
judging each cycle's proposals before the next.  Prints the time of every step.

Usage: ``python bench/bench_cycle.py [--tracks 6] [--cycles 2] [--ppo-timesteps N] [--device cpu|cuda]``
(``CYCLE_*`` environment variables change the defaults as they do for the site; ``--device``
sets ``TRAINING_DEVICE``, default: CUDA when present).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=6)
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--ppo-timesteps", type=int, default=None, help="default: CYCLE_PPO_TIMESTEPS")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: CUDA when present")
    args = parser.parse_args()
    if args.device:
        os.environ["TRAINING_DEVICE"] = args.device

    var = Path(tempfile.mkdtemp(prefix="bench-cycle-"))
    os.environ.update(VAR_DIR=str(var), STORAGE_ROOT=str(var / "storage"), DJANGO_SETTINGS_MODULE="feedback_site.settings")
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("CELERY_BROKER_URL", None)
    # Simulated annotators wait out the minimum listen in wall time; this bench times the cycle, not them.
    os.environ.setdefault("ANNOTATION_MIN_LISTEN_SECONDS", "0")
    import django

    django.setup()
    from dataclasses import replace

    import torch
    from django.conf import settings
    from django.core.management import call_command

    from annotations.services import baseline_comparisons_create, track_ingest
    from editing.demo import write_demo_corpus
    from rlhf.cycle.parameters import CycleParameters
    from rlhf.cycle.state import STEPS, cycle_create
    from rlhf.cycle.steps import cycle_run
    from rlhf.learning.reward_model import select_device
    from rlhf.evidence.simulate import annotators_simulate

    call_command("migrate", verbosity=0)
    began = time.perf_counter()
    tracks = [track_ingest(path=p)[0] for p in write_demo_corpus(var / "demo", n_tracks=args.tracks)]
    for i, track in enumerate(tracks):
        baseline_comparisons_create(track=track, n_excerpts=12, seed=i)
    device = select_device(settings.TRAINING_DEVICE)
    gpu = f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""
    print(f"device {device}{gpu}, torch threads {torch.get_num_threads()}, {len(tracks)} demo tracks "
          f"({sum(t.n_beats for t in tracks)} beats); studio set up in {time.perf_counter() - began:.1f} s")
    parameters = CycleParameters.defaults()
    if args.ppo_timesteps:
        parameters = replace(parameters, ppo_timesteps=args.ppo_timesteps)
    print(f"parameters: {parameters.to_json()}")
    for k in range(args.cycles):
        t = time.perf_counter()
        report = annotators_simulate(n_annotators=3, seed=k)
        judged = time.perf_counter() - t
        marks: dict[str, float] = {}

        def echo(fraction: float, message: str) -> None:
            if message.startswith("training the reward model"):
                marks[STEPS[0]] = time.perf_counter()
            elif message.startswith("training the policy"):
                marks[STEPS[1]] = time.perf_counter()
            elif message.startswith("proposing"):
                marks[STEPS[2]] = time.perf_counter()

        t = time.perf_counter()
        cycle = cycle_run(cycle=cycle_create(parameters=parameters, trigger="command"), echo=echo)
        end = time.perf_counter()
        if cycle.status != "done":
            raise SystemExit(f"cycle {cycle.pk} {cycle.status}: {cycle.error}")
        bounds = [marks[s] for s in STEPS] + [end]
        steps = ", ".join(f"{s} {bounds[i + 1] - bounds[i]:.1f} s" for i, s in enumerate(STEPS))
        rm, policy = cycle.metrics["reward_model"], cycle.metrics["policy"]
        print(f"cycle {cycle.pk}: {end - t:.1f} s in total ({steps}); {report.n_judgements} judgements simulated "
              f"in {judged:.1f} s before it; RM accuracy {rm['accuracy']:.3f} on {rm['n_judgements']} judgements "
              f"(on {rm['device']}); policy {policy['label']} {policy['num_timesteps']} steps on {policy['device']} "
              f"({policy['timesteps_this_run'] / policy['seconds']:.0f} PPO steps/s); "
              f"{cycle.metrics['proposal']['n_comparisons']} comparisons")


if __name__ == "__main__":
    main()
