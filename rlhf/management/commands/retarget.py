"""Retarget a track (or a passage of it) to a duration and write the result: ``manage.py retarget SOURCE --duration 2:30 --out FILE``."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotations.models import Edit, Track
from annotations.services import edit_native_write, track_ingest
from editing.audio import AudioError
from editing.retarget import format_duration
from rlhf.retarget.run import retarget_run
from rlhf.retarget.services import (
    RetargetServiceError, retarget_default_methods, retarget_methods_check, retarget_plan,
)

_FORMATS = {".wav": "WAV", ".flac": "FLAC"}


def _track(source: str) -> Track:
    """An audio file (ingested now; the same content is reused) or an ingested track's id, title or content hash."""
    path = Path(source)
    if path.is_file():
        try:
            track, _ = track_ingest(path=path)
        except AudioError as err:
            raise CommandError(str(err)) from err
        return track
    if source.isdigit():
        track = Track.objects.filter(pk=int(source)).first()
        if track is not None:
            return track
    matches = list(Track.objects.filter(title=source)[:2])
    if not matches and len(source) >= 8:  # a hash prefix short enough to type, long enough to be unique
        matches = list(Track.objects.filter(content_hash__startswith=source.lower())[:2])
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise CommandError(f"{source!r} names more than one track: give its id")
    raise CommandError(f"{source!r} is neither an audio file nor an ingested track (id, title or content hash)")


class Command(BaseCommand):
    help = ("Retarget a track to a duration, keeping its opening and final bars: the learned planner, the active "
            "policy (best of N by the reward model) or the retargeting heuristic.  Writes WAV or FLAC by the suffix "
            "of --out, at the source's sample rate and channels, in its sample format (16/24-bit, float; 16-bit for "
            "compressed sources), opening and closing as the source does.")

    def add_arguments(self, parser):
        parser.add_argument("source", help="an audio file (WAV, FLAC, OGG, MP3), or an ingested track's id, title or content hash")
        parser.add_argument("--duration", required=True, help="the length wanted: seconds (150) or m:ss (2:30)")
        parser.add_argument("--from-beat", type=int, default=None, help="first beat of the passage (default: 0)")
        parser.add_argument("--to-beat", type=int, default=None, help="beat after the passage (default: the track's end)")
        parser.add_argument("--method", default=None,
                            help="policy, heuristic, learned or best-of-N (default: the learned planner once it "
                                 "surely beats the heuristic in the judgements, else best-of-N as far as the active "
                                 "versions allow, else the heuristic; the command says which and why)")
        parser.add_argument("--out", required=True, help="output file, .wav or .flac")

    def handle(self, *args, **opts):
        out = Path(opts["out"])
        if out.suffix.lower() not in _FORMATS:
            raise CommandError(f"--out {out.name}: the suffix must be .wav or .flac")
        if not out.parent.exists():
            raise CommandError(f"--out {out}: the folder {out.parent} does not exist")
        try:
            if opts["method"] is None:
                defaults = retarget_default_methods()
                self.stdout.write(f"method: {defaults.reason}")
                opts["method"] = defaults.methods[0]
            (method,) = retarget_methods_check([opts["method"]])
            track = _track(opts["source"])
            plan = retarget_plan(track=track, duration=opts["duration"], from_beat=opts["from_beat"], to_beat=opts["to_beat"])
            self.stdout.write(
                f"{track.title}: beats {plan.start_beat}..{plan.start_beat + plan.n_beats} "
                f"({format_duration(plan.passage_seconds)}) -> {format_duration(plan.target_seconds)} asked, "
                f"{plan.target_beats} beats ({method.label})"
            )
            outcome = retarget_run(track=track, plan=plan, method=method)
        except (RetargetServiceError, AudioError) as err:
            raise CommandError(str(err)) from err
        self._write(outcome.edit, out)
        seams = ", ".join(format_duration(s) for s in outcome.seam_seconds) or "none"
        score = "no active reward model" if outcome.reward is None else f"{outcome.reward:+.3f} ({outcome.reward_model}, normalised)"
        chosen = "" if outcome.chosen_from is None else f", best of the pool: the {outcome.chosen_from} candidate"
        self.stdout.write(f"edit: {outcome.edit.source}{chosen}, {len(outcome.edit.render['track_beats'])} beats, "
                          f"{format_duration(outcome.duration_seconds)} (asked {format_duration(plan.target_seconds)})")
        self.stdout.write(f"seams ({len(outcome.seam_seconds)}): {seams}")
        self.stdout.write(f"reward model score: {score}")
        self.stdout.write(self.style.SUCCESS(f"wrote {out}"))

    @staticmethod
    def _write(edit: Edit, out: Path) -> None:
        """Write the edit's native rendering to ``out`` in the format of its suffix, atomically."""
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=out.suffix)
        os.close(fd)
        try:
            edit_native_write(edit=edit, out=tmp, container=_FORMATS[out.suffix.lower()])
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
