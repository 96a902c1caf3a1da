"""manage.py simulate_annotators: simulated annotators answer open comparisons (see rlhf.simulate)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from rlhf.simulate import AnnotatorModel, PreferenceRule, SimulationError, annotators_simulate


class Command(BaseCommand):
    help = "Answer open comparisons with simulated annotators following a hidden rule computed from the rendered audio."

    def add_arguments(self, parser):
        parser.add_argument("--annotators", type=int, default=3)
        parser.add_argument("--max-judgements", type=int, default=None)
        parser.add_argument("--noise", type=float, default=AnnotatorModel.noise, help="share of random answers")
        parser.add_argument("--temperature", type=float, default=AnnotatorModel.temperature,
                            help="score margin scale of the Boltzmann choice")
        parser.add_argument("--seam-cost", type=float, default=PreferenceRule.seam_cost)
        parser.add_argument("--jump-cost", type=float, default=PreferenceRule.jump_cost_per_6db,
                            help="cost per 6 dB of loudness jump at a seam")
        parser.add_argument("--off-bar-cost", type=float, default=PreferenceRule.off_bar_cost)
        parser.add_argument("--repeat-cost", type=float, default=PreferenceRule.repeat_cost)
        parser.add_argument("--length-cost", type=float, default=PreferenceRule.length_cost,
                            help="cost per beat between an edit's length and its target length")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **opts):
        rule = PreferenceRule(seam_cost=opts["seam_cost"], jump_cost_per_6db=opts["jump_cost"],
                              off_bar_cost=opts["off_bar_cost"], repeat_cost=opts["repeat_cost"],
                              length_cost=opts["length_cost"])
        model = AnnotatorModel(noise=opts["noise"], temperature=opts["temperature"])
        bar = tqdm(total=opts["max_judgements"], unit="judgement", disable=opts["verbosity"] == 0)
        try:
            report = annotators_simulate(n_annotators=opts["annotators"], max_judgements=opts["max_judgements"],
                                         rule=rule, model=model, seed=opts["seed"], progress=lambda n: bar.update(1))
        except SimulationError as err:
            raise CommandError(str(err)) from err
        finally:
            bar.close()
        self.stdout.write(self.style.SUCCESS(
            f"{report.n_judgements} judgements by {report.n_annotators} simulated annotators "
            f"({report.n_random} answered at random)"
        ))
