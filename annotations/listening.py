"""What each annotator was actually served of each side, measured by the server.

The audio view calls ``listening_record`` once per response, after streaming,
with the bytes that left the server; simulated annotators call the same
service for the audio they read.  ``listening_heard`` turns those records into
seconds of each side, and ``listening_check`` is the rule a judgement must
pass: both sides served for the minimum listen (``settings.
ANNOTATION_MIN_LISTEN_SECONDS``, or the whole clip when it is shorter), and at
least that much wall time since the comparison was shown (``Assignment.
shown_at``).  A pair given ahead with ``?ahead=1`` may have its audio fetched
while another is judged: those bytes count as served, but its clock starts only
when ``assignment_next`` shows it, so a prefetch buys no listening time.  The
seconds the client reports are stored next to these and never trusted.

The unedited original passage (``Passage``) is recorded the same way, as side
``"o"`` of the assignment, by ``listening_record_original``; hearing it is
never required, and ``Heard.original`` says whether any of it was served.
``listening_allowed_edit`` and ``listening_allowed_comparison`` say who may
fetch which audio.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import logging

from django.db.models import Q
from django.db.models.fields.files import FieldFile
from django.utils import timezone

from editing.audio import AudioError

from . import roles

from .assignment import ServedAudio, ShownComparison, min_listen_seconds, open_assignments, shown_comparison
from .errors import ComparisonNotFound, InvalidJudgement, NotListenedEnough
from .models import Assignment, Comparison, Edit, ListeningRecord
from .services import (
    edit_native_ensure,
    listening_format,
    passage_listening_copy_ensure,
    passage_listening_ensure,
)

logger = logging.getLogger(__name__)

# The one format served from the edit's own (analysis-rate, mono) rendering; the others are copies
# of the native render (annotations.models.ListeningCopy).
LEGACY_FORMAT = "mp3"

# Float slack when comparing served seconds (computed from bytes) with the required seconds.
_SECONDS_SLACK = 1e-6


def _heard_by(user, assignments) -> bool:
    """Researchers and admins hear everything; an annotator what ``assignments`` (theirs) show, open or completed."""
    if roles.is_researcher(user):
        return True
    if not roles.is_annotator(user):
        return False
    mine = assignments.filter(annotator=user)
    return (mine.filter(completed_at__isnull=False).exists()
            or open_assignments().filter(pk__in=mine.values("pk")).exists())


def listening_allowed_edit(*, user, edit_id: int) -> bool:
    """Selector: whether ``user`` may fetch edit ``edit_id``'s audio (an annotator: an edit of a comparison
    assigned to them, open or completed)."""
    return _heard_by(user, Assignment.objects.filter(Q(comparison__edit_a_id=edit_id)
                                                     | Q(comparison__edit_b_id=edit_id)))


def listening_allowed_comparison(*, user, comparison_id: int) -> bool:
    """Selector: whether ``user`` may fetch comparison ``comparison_id``'s original passage (an annotator: a
    comparison assigned to them, open or completed).  Through a comparison only its own passage is reachable."""
    return _heard_by(user, Assignment.objects.filter(comparison_id=comparison_id))


@dataclass(frozen=True)
class Original:
    """The original passage of a comparison as the page plays it: its audio and its beat map."""

    comparison_id: int
    audio: FieldFile  # the file served
    audio_format: str  # "opus", "flac" or "mp3", as the edits' (settings.ANNOTATION_AUDIO_FORMAT)
    duration_seconds: float
    beat_starts_seconds: list[float]  # n_source_beats + 1 boundaries, seconds
    track_beats: list[int]  # the track beat of each, in order


def listening_original(*, user, comparison_id: int) -> Original:
    """The original passage of comparison ``comparison_id`` for ``user``, rendered on first request.

    Raises
    ------
    ComparisonNotFound : 404 -- no such comparison, or one that ``user`` may not hear
        (the same answer, so ids reveal nothing).
    """
    comparison = (Comparison.objects.select_related("track", "edit_a").filter(pk=comparison_id).first()
                  if listening_allowed_comparison(user=user, comparison_id=comparison_id) else None)
    if comparison is None:
        raise ComparisonNotFound(f"comparison {comparison_id} does not exist or is not assigned to you")
    fmt = listening_format()
    if fmt != LEGACY_FORMAT:
        try:
            copy = passage_listening_copy_ensure(comparison=comparison, fmt=fmt)
            audio, duration, render = copy.audio, copy.duration_seconds, copy.render
        except AudioError as err:  # as the edits' copies: see served_audio_ensure
            logger.warning("comparison %s: original served as %s: %s", comparison.pk, LEGACY_FORMAT, err)
            fmt = LEGACY_FORMAT
    if fmt == LEGACY_FORMAT:
        passage = passage_listening_ensure(comparison=comparison)
        audio, duration, render = passage.listening_audio, passage.duration_seconds, passage.render
    return Original(comparison_id=comparison.pk, audio=audio, audio_format=fmt, duration_seconds=float(duration),
                    beat_starts_seconds=[float(t) for t in render["beat_starts_seconds"]],
                    track_beats=[int(b) for b in render["track_beats"]])


def served_audio_ensure(*, edit: Edit) -> ServedAudio:
    """The file of ``edit`` that annotators are served in the site's format: its duration and timeline.

    An Opus or FLAC copy is the native render encoded without a shift or a change of length
    (``editing.listening``), so its timeline is the native render's (made first if missing); the
    copy itself is encoded by the audio view on first fetch, so this answer never waits for an encoder.
    """
    fmt = listening_format()
    native = None
    if fmt != LEGACY_FORMAT:
        try:
            native = edit_native_ensure(edit=edit)
        except AudioError as err:
            # A source the native renderer refuses (more than two channels, 8-bit samples): the
            # analysis-rate mono copy, as before native copies, rather than no pair at all.  Both
            # edits of a comparison share the source, so both sides fall back together.
            logger.warning("edit %s: served as %s: %s", edit.pk, LEGACY_FORMAT, err)
    if native is None:
        return ServedAudio(format=LEGACY_FORMAT, duration_seconds=float(edit.duration_seconds),
                           render=edit.render or {})
    return ServedAudio(format=fmt, duration_seconds=float(native["duration_seconds"]),
                       render={key: native[key] for key in ("beat_starts_seconds", "track_beats", "seam_seconds")})


def listening_shown(assignment: Assignment) -> ShownComparison:
    """What the page shows for ``assignment``, its edits' native renders made first where missing.

    Called for the upcoming comparison too (``?ahead=1``), whose audio the page then fetches (and the
    audio view encodes) while the current one is being judged, so the next pair starts without waiting.
    """
    comparison = assignment.comparison
    served = {edit.pk: served_audio_ensure(edit=edit) for edit in (comparison.edit_a, comparison.edit_b)}
    return shown_comparison(assignment, served=served)


def _check_span(what: str, first_byte: int, n_bytes: int, file_bytes: int) -> None:
    if file_bytes <= 0 or first_byte < 0 or n_bytes < 0 or first_byte + n_bytes > file_bytes:
        raise InvalidJudgement(f"{what}: {n_bytes} bytes from byte {first_byte} do not fit a file of {file_bytes} bytes")


def listening_record(*, annotator, edit_id: int, first_byte: int, n_bytes: int, file_bytes: int,
                     file_seconds: float | None = None, started_at: datetime | None = None,
                     finished_at: datetime | None = None) -> list[ListeningRecord]:
    """Record that ``n_bytes`` of edit ``edit_id``'s audio, from ``first_byte`` on, were served to ``annotator``.

    One record per unfinished assignment of the annotator whose comparison
    shows this edit (usually one), per side it is shown on (both for a hidden
    reference); nothing is recorded for anyone else (a researcher listening, a
    completed comparison replayed).

    Parameters
    ----------
    first_byte : offset of the first byte served, bytes
    n_bytes : bytes actually handed over, from ``first_byte`` on
    file_bytes : size of the whole audio file, bytes
    file_seconds : duration of the file served, seconds (None: the edit's own rendering, of the edit's duration)
    started_at, finished_at : when the request arrived and ended (default: now)

    Raises
    ------
    InvalidJudgement : the byte span does not fit in the file.
    """
    _check_span(f"edit {edit_id}", first_byte, n_bytes, file_bytes)
    now = timezone.now()
    assignments = Assignment.objects.filter(
        Q(comparison__edit_a_id=edit_id) | Q(comparison__edit_b_id=edit_id),
        annotator=annotator, completed_at__isnull=True, skipped_reason="",
    ).values_list("pk", "comparison__edit_a_id", "comparison__edit_b_id")
    # A hidden reference shows the same edit on both sides: its audio is both sides' audio.
    records = [
        ListeningRecord(assignment_id=pk, side=side, first_byte=first_byte, n_bytes=n_bytes, file_bytes=file_bytes,
                        file_seconds=file_seconds, started_at=started_at or now, finished_at=finished_at or now)
        for pk, edit_a_id, edit_b_id in assignments
        for side, shown in (("a", edit_a_id), ("b", edit_b_id)) if shown == edit_id
    ]
    return ListeningRecord.objects.bulk_create(records)


def listening_record_original(*, annotator, comparison_id: int, first_byte: int, n_bytes: int, file_bytes: int,
                              file_seconds: float | None = None, started_at: datetime | None = None,
                              finished_at: datetime | None = None) -> list[ListeningRecord]:
    """Record that ``n_bytes`` of comparison ``comparison_id``'s original passage were served to ``annotator``.

    Against the annotator's unfinished assignment of that comparison only (none
    for anyone else, or once judged); parameters as for ``listening_record``.

    Raises
    ------
    InvalidJudgement : the byte span does not fit in the file.
    """
    _check_span(f"the original of comparison {comparison_id}", first_byte, n_bytes, file_bytes)
    now = timezone.now()
    assignments = Assignment.objects.filter(comparison_id=comparison_id, annotator=annotator,
                                            completed_at__isnull=True, skipped_reason="").values_list("pk", flat=True)
    records = [
        ListeningRecord(assignment_id=pk, side=ListeningRecord.Side.ORIGINAL, first_byte=first_byte,
                        n_bytes=n_bytes, file_bytes=file_bytes, file_seconds=file_seconds,
                        started_at=started_at or now, finished_at=finished_at or now)
        for pk in assignments
    ]
    return ListeningRecord.objects.bulk_create(records)


def _covered_bytes(spans: list[tuple[int, int]]) -> int:
    """Bytes covered by the union of half-open ``(start, end)`` spans."""
    covered, reach = 0, -1
    for start, end in sorted(spans):
        if end <= reach:
            continue
        covered += end - max(start, reach)
        reach = end
    return covered


@dataclass(frozen=True)
class Heard:
    """Seconds of each side served to the annotator of one assignment (distinct audio, not repeats), and whether
    any of the original passage was."""

    seconds_a: float
    seconds_b: float
    original: bool = False


def listening_heard(*, assignment: Assignment, comparison: Comparison) -> Heard:
    """Selector: seconds of edit A and edit B served for ``assignment``, and whether any of the original was.

    A side's seconds are, per file served (the WAV, the legacy MP3, an Opus or FLAC copy), the share
    of the file covered by the served byte ranges times the file's duration (``file_seconds``, or the
    edit's own for its own rendering); fetching the same bytes twice counts once, and a side counts
    the file heard most.
    """
    spans: dict[tuple[str, int, float | None], list[tuple[int, int]]] = {}
    for side, first, n, size, seconds in ListeningRecord.objects.filter(assignment=assignment).values_list(
            "side", "first_byte", "n_bytes", "file_bytes", "file_seconds"):
        spans.setdefault((side, size, seconds), []).append((first, first + n))
    durations = {"a": comparison.edit_a.duration_seconds, "b": comparison.edit_b.duration_seconds}
    heard = {"a": 0.0, "b": 0.0}
    original = False
    for (side, size, seconds), file_spans in spans.items():
        if side == ListeningRecord.Side.ORIGINAL:
            original = original or _covered_bytes(file_spans) > 0
            continue
        duration = float(durations[side] if seconds is None else seconds)
        heard[side] = max(heard[side], min(_covered_bytes(file_spans), size) / size * duration)
    return Heard(seconds_a=heard["a"], seconds_b=heard["b"], original=original)


def listening_check(*, assignment: Assignment, comparison: Comparison, now: datetime) -> tuple[Heard, float]:
    """The listening rule of a submit: returns what was served and the wall seconds since the assignment.

    Raises
    ------
    NotListenedEnough : 409 -- the comparison was only prefetched, never shown; a
        side was served less than its minimum listen; or less wall time than that
        has passed since the comparison was shown.
    """
    if assignment.shown_at is None:
        raise NotListenedEnough(
            f"comparison {comparison.pk} has not been shown yet (only fetched ahead); "
            f"its listening time starts when it is shown"
        )
    heard = listening_heard(assignment=assignment, comparison=comparison)
    wall_seconds = max(0.0, (now - assignment.shown_at).total_seconds())
    required = {"A": min_listen_seconds(comparison.edit_a.duration_seconds),
                "B": min_listen_seconds(comparison.edit_b.duration_seconds)}
    for label, served in (("A", heard.seconds_a), ("B", heard.seconds_b)):
        if served + _SECONDS_SLACK < required[label]:
            raise NotListenedEnough(
                f"edit {label} of comparison {comparison.pk}: the server has sent you {served:.1f} s of its "
                f"audio; at least {required[label]:g} s must be fetched from its audio URL before judging"
            )
    least = max(required.values())
    if wall_seconds + _SECONDS_SLACK < least:
        raise NotListenedEnough(
            f"comparison {comparison.pk} was shown {wall_seconds:.1f} s ago; "
            f"judging needs at least {least:g} s of listening since then"
        )
    return heard, wall_seconds


def listening_record_in_full(*, annotator, assignment: Assignment) -> list[ListeningRecord]:
    """Record both edits of ``assignment`` as served whole to ``annotator``, as the audio view would.

    For listeners that read the audio files themselves (the simulated
    annotators of ``rlhf.evidence.simulate``): they pass the same rule as a browser,
    which needs both files fetched and the time waited (``listening_wait_seconds``).
    """
    comparison = assignment.comparison
    records: list[ListeningRecord] = []
    for edit in {comparison.edit_a_id: comparison.edit_a, comparison.edit_b_id: comparison.edit_b}.values():
        size = edit.audio.size
        records += listening_record(annotator=annotator, edit_id=edit.pk, first_byte=0, n_bytes=size,
                                    file_bytes=size)
    return records


def listening_wait_seconds(*, assignment: Assignment, now: datetime | None = None) -> float:
    """Selector: wall seconds still to pass before ``assignment`` may be judged (0 when it may be now).

    The whole minimum listen while it is not shown yet (its clock has not started).
    """
    comparison = assignment.comparison
    least = max(min_listen_seconds(comparison.edit_a.duration_seconds),
                min_listen_seconds(comparison.edit_b.duration_seconds))
    if assignment.shown_at is None:
        return least
    elapsed = ((now or timezone.now()) - assignment.shown_at).total_seconds()
    return max(0.0, least - elapsed)
