"""manage.py simulate_loop: N full cycles with simulated annotators; prints whether the loop learns."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotations.models import Comparison, Track
from annotations.services import baseline_comparisons_create, track_ingest
from editing.demo import write_demo_corpus
from rlhf import artifacts
from rlhf.cycle.errors import CycleError
from rlhf.evidence.evaluation import EvaluationError, LoopRow, simulated_loop
from rlhf.evidence.listeners import DEFAULT_LISTENER, ListenerError, load_listener
from rlhf.management.commands.run_cycle import add_parameter_arguments, parameters_from_options


class Command(BaseCommand):
    help = ("Run N cycles, simulated annotators judging every open comparison before each; print per cycle the "
            "reward model's held-out accuracy and the win rate of the new policy against random edits and against "
            "the first policy.")

    def add_arguments(self, parser):
        parser.add_argument("--cycles", type=int, default=3)
        parser.add_argument("--annotators", type=int, default=3)
        parser.add_argument("--noise", type=float, default=0.1, help="share of answers given at random")
        parser.add_argument("--eval-excerpts", type=int, default=24)
        parser.add_argument("--demo-tracks", type=int, default=3,
                            help="ingest this many demo tracks when the studio has no tracks yet")
        parser.add_argument("--baseline-excerpts", type=int, default=10,
                            help="baseline comparisons per track when the studio has no comparisons yet")
        parser.add_argument("--loop-seed", type=int, default=0)
        parser.add_argument("--listener", default=DEFAULT_LISTENER,
                            help="the simulated annotators' listener: PATH.py:NAME or module:NAME")
        add_parameter_arguments(parser)

    def handle(self, *args, **opts):
        if opts["cycles"] < 1:
            raise CommandError("--cycles must be at least 1")
        try:
            listener = load_listener(opts["listener"])
        except ListenerError as err:
            raise CommandError(str(err)) from err
        if not Track.objects.exists():
            folder = artifacts.storage_root() / "demo-corpus"
            for path in write_demo_corpus(Path(folder), n_tracks=opts["demo_tracks"]):
                track_ingest(path=path)
            self.stdout.write(f"ingested {opts['demo_tracks']} demo tracks")
        if not Comparison.objects.exists():
            for i, track in enumerate(Track.objects.order_by("pk")):
                baseline_comparisons_create(track=track, n_excerpts=opts["baseline_excerpts"], seed=opts["loop_seed"] + i)
            self.stdout.write(f"created {Comparison.objects.count()} baseline comparisons")
        header = f"{'cycle':>5}  {'reward model':>12}  {'policy':>6}  {'RM held-out acc':>15}  " \
                 f"{'win vs random':>13}  {'vs heuristic':>12}  {'win vs first':>12}  {'judgements':>10}  {'seconds':>7}"
        self.stdout.write(header)

        def on_row(row: LoopRow) -> None:
            acc = "-" if row.rm_accuracy is None else f"{row.rm_accuracy:.3f}"
            first = "-" if row.win_vs_first is None else f"{row.win_vs_first:.3f}"
            self.stdout.write(f"{row.cycle:>5}  {row.reward_model:>12}  {row.policy:>6}  {acc:>15}  "
                              f"{row.win_vs_random:>13.3f}  {row.win_vs_heuristic:>12.3f}  {first:>12}  {row.n_judgements:>10}  {row.seconds:>7.1f}")
            self.stdout.flush()

        try:
            simulated_loop(
                n_cycles=opts["cycles"], parameters=parameters_from_options(opts), listener=listener,
                n_annotators=opts["annotators"],
                noise=opts["noise"], eval_excerpts=opts["eval_excerpts"], seed=opts["loop_seed"], on_row=on_row,
            )
        except (CycleError, EvaluationError) as err:
            raise CommandError(str(err)) from err
