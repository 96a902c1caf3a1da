"""manage.py simulate_annotators: simulated annotators answer open comparisons (see rlhf.evidence.simulate)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from rlhf.evidence.listeners import DEFAULT_LISTENER, ListenerError, load_listener
from rlhf.evidence.simulate import AnnotatorModel, SimulationError, annotators_simulate


class Command(BaseCommand):
    help = ("Answer open comparisons with simulated annotators: a listener scores each rendered edit "
            "(--listener PATH.py:NAME or module:NAME; default: harmonic clash, metre and phrase on the true grid).")

    def add_arguments(self, parser):
        parser.add_argument("--annotators", type=int, default=3)
        parser.add_argument("--max-judgements", type=int, default=None)
        parser.add_argument("--listener", default=DEFAULT_LISTENER, help="a callable score(clip), higher is better")
        parser.add_argument("--noise", type=float, default=AnnotatorModel.noise, help="share of random answers")
        parser.add_argument("--temperature", type=float, default=AnnotatorModel.temperature,
                            help="score margin scale of the Boltzmann choice")
        parser.add_argument("--tie-margin", type=float, default=AnnotatorModel.tie_margin,
                            help="score margins below this are answered 'tie'")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **opts):
        try:
            listener = load_listener(opts["listener"])
        except ListenerError as err:
            raise CommandError(str(err)) from err
        model = AnnotatorModel(noise=opts["noise"], temperature=opts["temperature"], tie_margin=opts["tie_margin"])
        bar = tqdm(total=opts["max_judgements"], unit="judgement", disable=opts["verbosity"] == 0)
        try:
            report = annotators_simulate(n_annotators=opts["annotators"], max_judgements=opts["max_judgements"],
                                         listener=listener, model=model, seed=opts["seed"],
                                         progress=lambda n: bar.update(1))
        except (SimulationError, ListenerError) as err:
            raise CommandError(str(err)) from err
        finally:
            bar.close()
        self.stdout.write(self.style.SUCCESS(
            f"{report.n_judgements} judgements by {report.n_annotators} simulated annotators "
            f"({report.n_random} answered at random)"
        ))
