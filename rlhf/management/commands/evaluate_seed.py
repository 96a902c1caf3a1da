"""manage.py evaluate_seed: one seed of ``evaluate_loop`` in a throw-away studio (evaluate_loop starts it)."""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from annotations.models import Track
from rlhf.cycle.errors import CycleError
from rlhf.cycle.parameters import CycleParameters
from rlhf.evidence.evaluation import EvaluationError, eval_track_from_file, seed_run, write_json
from rlhf.evidence.listeners import ListenerError, load_listener
from rlhf.evidence.simulate import AnnotatorModel


class Command(BaseCommand):
    help = ("One seed of evaluate_loop: ingest the training tracks, run the cycles and score every arm on the "
            "held-out tracks.  Runs only in an empty studio (evaluate_loop gives each seed its own).")

    def add_arguments(self, parser):
        parser.add_argument("--split", required=True,
                            help='JSON {"train": [paths], "held_out": [paths]} (evaluate_loop decides the folds)')
        parser.add_argument("--seed", type=int, required=True)
        parser.add_argument("--cycles", type=int, required=True)
        parser.add_argument("--listener", required=True)
        parser.add_argument("--parameters", required=True, help="cycle parameters as JSON")
        parser.add_argument("--noise", type=float, required=True)
        parser.add_argument("--annotators", type=int, required=True)
        parser.add_argument("--eval-excerpts", type=int, required=True)
        parser.add_argument("--baseline-excerpts", type=int, required=True)
        parser.add_argument("--result", required=True, help="JSON file to write")

    def handle(self, *args, **opts):
        call_command("migrate", verbosity=0)
        if Track.objects.exists():
            raise CommandError("evaluate_seed runs only in an empty studio: this one has tracks, and held-out "
                               "tracks must never meet training data")
        split = json.loads(opts["split"])
        try:
            listener = load_listener(opts["listener"])
            parameters = CycleParameters.from_json(json.loads(opts["parameters"]), base=CycleParameters())
            result = seed_run(
                train_files=[Path(p) for p in split["train"]],
                held_out=[eval_track_from_file(Path(p)) for p in split["held_out"]], n_cycles=opts["cycles"],
                parameters=parameters, listener=listener, annotator=AnnotatorModel(noise=opts["noise"]),
                n_annotators=opts["annotators"], eval_excerpts=opts["eval_excerpts"],
                baseline_excerpts=opts["baseline_excerpts"], seed=opts["seed"],
                workdir=Path(opts["result"]).parent / "policies",
                echo=lambda message: (self.stdout.write(message), self.stdout.flush()),
            )
        except (EvaluationError, ListenerError, CycleError) as err:
            raise CommandError(str(err)) from err
        write_json(Path(opts["result"]), result)
