"""manage.py schedule_cycles: create or update the django-celery-beat entry that starts cycles."""
from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django_celery_beat.models import IntervalSchedule, PeriodicTask

TASK_NAME = "rlhf: start a cycle when enough judgements are new"


class Command(BaseCommand):
    help = "Schedule rlhf.tasks.maybe_start_cycle every N hours (editable afterwards in the admin)."

    def add_arguments(self, parser):
        parser.add_argument("--every-hours", type=float, default=settings.CYCLE_EVERY_HOURS)
        parser.add_argument("--min-new-judgements", type=int, default=settings.CYCLE_MIN_NEW_JUDGEMENTS)
        parser.add_argument("--disable", action="store_true", help="keep the entry but stop it")

    def handle(self, *args, **opts):
        minutes = round(opts["every_hours"] * 60)
        if minutes < 1:
            raise CommandError(f"--every-hours {opts['every_hours']} is under a minute")
        if opts["min_new_judgements"] < 0:
            raise CommandError("--min-new-judgements cannot be negative")
        interval, _ = IntervalSchedule.objects.get_or_create(every=minutes, period=IntervalSchedule.MINUTES)
        task, created = PeriodicTask.objects.update_or_create(
            name=TASK_NAME,
            defaults={
                "task": "rlhf.tasks.maybe_start_cycle",
                "interval": interval,
                "kwargs": json.dumps({"min_new_judgements": opts["min_new_judgements"]}),
                "queue": settings.TRAINING_QUEUE,
                "enabled": not opts["disable"],
            },
        )
        self.stdout.write(
            f"{'created' if created else 'updated'} '{TASK_NAME}': every {minutes} min, "
            f"at least {opts['min_new_judgements']} new judgements, {'disabled' if opts['disable'] else 'enabled'}"
        )
