"""manage.py run_cycle: run one retrain cycle in this process, with a progress bar (or queue it for the workers)."""
from __future__ import annotations

import argparse

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from rlhf.cycle.errors import CycleError
from rlhf.cycle.parameters import CycleParameters
from rlhf.cycle.state import cycle_create, cycle_require_data, cycle_start
from rlhf.cycle.steps import cycle_run


def add_parameter_arguments(parser) -> None:
    """One --option per ``CycleParameters`` field (shared with simulate_loop)."""
    defaults = CycleParameters()
    for name, value in defaults.to_json().items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=f"default: {'on' if value else 'off'}")
        elif name in CycleParameters.CHOICES:
            parser.add_argument(flag, dest=name, choices=CycleParameters.CHOICES[name], default=None,
                                help=f"default: {value}")
        else:
            parser.add_argument(flag, dest=name, type=type(value), default=None,
                                help=f"default: the CYCLE_* setting or {value}")


def parameters_from_options(opts: dict) -> CycleParameters:
    given = {name: opts[name] for name in CycleParameters().to_json() if opts.get(name) is not None}
    return CycleParameters.from_json(given)


class Command(BaseCommand):
    help = "Run one cycle: train the reward model, fine-tune the policy, propose comparisons."

    def add_arguments(self, parser):
        add_parameter_arguments(parser)
        parser.add_argument("--queue", action="store_true",
                            help="send the cycle to the training workers instead of running it here")

    def handle(self, *args, **opts):
        try:
            parameters = parameters_from_options(opts)
            if opts["queue"]:
                cycle = cycle_start(parameters=parameters, trigger="command")
                self.stdout.write(f"cycle {cycle.pk} queued")
                return
            cycle_require_data()
            cycle = cycle_create(parameters=parameters, trigger="command")
        except CycleError as err:
            raise CommandError(str(err)) from err
        bar = tqdm(total=100, unit="%", disable=opts["verbosity"] == 0, desc=f"cycle {cycle.pk}")

        def echo(fraction: float, message: str) -> None:
            bar.n = round(100 * fraction, 1)
            if message:
                bar.set_postfix_str(message[:70])
            bar.refresh()

        cycle = cycle_run(cycle=cycle, echo=echo)
        bar.close()
        if cycle.status != cycle.Status.DONE:
            raise CommandError(f"cycle {cycle.pk} {cycle.status}: {cycle.error}")
        rm, policy = cycle.metrics["reward_model"], cycle.metrics["policy"]
        self.stdout.write(self.style.SUCCESS(
            f"cycle {cycle.pk} done: reward model {rm['label']} (validation accuracy {rm['accuracy']:.3f}), "
            f"policy {policy['label']} ({policy['num_timesteps']} steps), "
            f"{cycle.metrics['proposal']['n_comparisons']} comparisons proposed"
        ))
