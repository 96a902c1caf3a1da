"""manage.py train_reward_model: train, register and (by default) activate a reward-model version."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from rlhf.learning.configs import TrainingConfig
from rlhf.learning.reward_data import RewardModelError
from rlhf.cycle.reward_services import reward_model_train
from rlhf.versions import RewardServiceError


class Command(BaseCommand):
    help = "Train a reward model from the current judgements (gold items and low-accuracy annotators left out)."

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--members", type=int, default=TrainingConfig.n_members, help="ensemble size")
        parser.add_argument("--max-epochs", type=int, default=TrainingConfig.max_epochs)
        parser.add_argument("--patience", type=int, default=TrainingConfig.patience)
        parser.add_argument("--batch-pairs", type=int, default=TrainingConfig.batch_pairs)
        parser.add_argument("--min-pairs", type=int, default=TrainingConfig.min_pairs,
                            help="refuse to train on fewer compared pairs of edits")
        parser.add_argument("--threads", type=int, default=TrainingConfig.n_threads)
        parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: CUDA when present")
        parser.add_argument("--warm-start", action="store_true", help="start from the active version's weights")
        parser.add_argument("--no-activate", action="store_true", help="register without activating")
        parser.add_argument("--include-gold", action="store_true")
        parser.add_argument("--min-gold-accuracy", type=float, default=None,
                            help="drop annotators below this gold accuracy (default: REWARD_MIN_GOLD_ACCURACY; 0 keeps all)")

    def handle(self, *args, **opts):
        config = TrainingConfig(
            seed=opts["seed"], n_members=opts["members"], max_epochs=opts["max_epochs"], patience=opts["patience"],
            batch_pairs=opts["batch_pairs"], min_pairs=opts["min_pairs"], n_threads=opts["threads"],
            device=opts["device"],
        )
        bar = tqdm(total=0, unit="batch", disable=opts["verbosity"] == 0)

        def progress(stage: str, done: int, total: int) -> None:
            if bar.desc != stage:
                bar.set_description(stage)
                bar.reset(total=total)
            bar.n = done
            bar.refresh()

        try:
            version = reward_model_train(
                config=config, warm_start=opts["warm_start"], activate=not opts["no_activate"],
                include_gold=opts["include_gold"], min_gold_accuracy=opts["min_gold_accuracy"], progress=progress,
            )
        except (RewardModelError, RewardServiceError) as err:  # the model refused, or the service did
            raise CommandError(str(err)) from err
        finally:
            bar.close()
        m = version.metrics
        baseline = m["baseline_accuracy"]
        self.stdout.write(self.style.SUCCESS(
            f"{version.label}{' (active)' if version.is_active else ''}: {version.n_judgements} judgements, "
            f"validation accuracy {m['accuracy']:.3f} (dense-only "
            f"{'n/a' if baseline is None else f'{baseline:.3f}'}), ECE {m['ece']:.3f}, "
            f"{m['train_seconds']:.0f} s"
        ))
