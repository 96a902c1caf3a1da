"""manage.py ingest_audio PATH... : analyse audio files (or folders, recursively) and store them as tracks."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotations.services import track_ingest
from editing.audio import SUPPORTED_EXTENSIONS, AudioError, warm_up


def collect_audio_paths(paths: list[str]) -> list[Path]:
    """Files named directly, plus every supported audio file found under named folders."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS))
        elif path.exists():
            found.append(path)
        else:
            raise CommandError(f"{raw}: no such file or folder")
    return found


class Command(BaseCommand):
    help = "Ingest audio files (WAV, FLAC, OGG, MP3) or folders of them, recursively."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", help="files or folders")
        parser.add_argument("--max-seconds", type=float, default=settings.MAX_TRACK_SECONDS,
                            help="refuse tracks longer than this (default %(default)s)")

    def handle(self, *args, paths, max_seconds, **options):
        files = collect_audio_paths(paths)
        if not files:
            raise CommandError("no audio files found in " + ", ".join(paths))
        warm_up()
        created, existing, refused = 0, 0, []
        for path in tqdm(files, desc="ingest", unit="file", disable=options["verbosity"] == 0):
            try:
                track, is_new = track_ingest(path=path, max_seconds=max_seconds)
            except AudioError as err:
                refused.append(str(err))
                continue
            if is_new:
                created += 1
            else:
                existing += 1
        self.stdout.write(f"{len(files)} files: {created} ingested, {existing} already present, {len(refused)} refused")
        for reason in refused:
            self.stderr.write(f"refused: {reason}")
        if refused and not created and not existing:
            raise CommandError("no file could be ingested")
