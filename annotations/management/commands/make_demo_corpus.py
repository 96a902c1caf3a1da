"""manage.py make_demo_corpus : write the generated demo tracks and their ground-truth beats."""
from django.core.management.base import BaseCommand

from editing.demo import write_demo_corpus


class Command(BaseCommand):
    help = "Write a deterministic demo corpus (multi-section tracks with ground-truth beat times)."

    def add_arguments(self, parser):
        parser.add_argument("--out", default="var/demo_corpus", help="output folder (default %(default)s)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--tracks", type=int, default=6, help="number of tracks (default %(default)s)")

    def handle(self, *args, out, seed, tracks, **options):
        paths = write_demo_corpus(out, seed=seed, n_tracks=tracks)
        for path in paths:
            self.stdout.write(str(path))
        self.stdout.write(f"{len(paths)} demo tracks written to {out}")
