"""Small factories for annotation tests: users with roles, tracks, edits, comparisons, judgements.

No beat tracking or feature extraction runs here: a track has no analysis
file (``make_track_with_audio`` writes a tone per beat and its exact beat grid
instead, for what renders from the track), and an edit's audio is a tiny real
WAV (one short tone per output beat, pitched by the track beat it plays) with a
matching ``render`` beat map, so audio serving, the page's players and playhead
mapping all work on it.
"""
from __future__ import annotations

import io
import itertools
import uuid
from datetime import datetime, timedelta

import numpy as np
import soundfile as sf
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from annotations.models import Assignment, Comparison, Edit, Judgement, Track
from annotations.roles import ANNOTATOR
from editing.audio import ANALYSIS_SR, BEATS_PER_BAR, FEATURE_VERSION, N_AUDIO_FEATURES

PASSWORD = "listen-carefully-42"
SAMPLE_RATE = 8000
_seq = itertools.count(1)


def make_user(username: str | None = None, *, role: str | None = ANNOTATOR, password: str = PASSWORD,
              **fields):
    """A user in group ``role`` ("annotator", "researcher", "admin" or None for no role)."""
    user = get_user_model().objects.create_user(username=username or f"user{next(_seq)}", password=password,
                                                **fields)
    if role is not None:
        # get_or_create: a transactional test's flush also empties the groups the migration made
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def make_track(*, title: str | None = None, n_beats: int = 64, tempo_bpm: float = 120.0) -> Track:
    """A track row without stored audio or analysis (enough for everything but ingest and rendering)."""
    n = next(_seq)
    return Track.objects.create(
        title=title or f"track {n}", original_name=f"track{n}.wav", content_hash=uuid.uuid4().hex * 2,
        audio="", analysis="", sample_rate=22050, source_sample_rate=44100,
        duration_seconds=n_beats * 60.0 / tempo_bpm, tempo_bpm=tempo_bpm, n_beats=n_beats,
        feature_version="test",
    )


def tone_wav(track_beats, *, seconds_per_beat: float, sample_rate: int = SAMPLE_RATE) -> bytes:
    """WAV bytes: one decaying tone per output beat, pitch set by its track beat (so switches are audible)."""
    n = int(round(seconds_per_beat * sample_rate))
    t = np.arange(n) / sample_rate
    envelope = np.exp(-t * 6.0).astype(np.float32)
    beats = [np.float32(0.3) * envelope * np.sin(2 * np.pi * 220.0 * 2 ** ((int(b) % 24) / 12) * t).astype(np.float32)
             for b in track_beats]
    buf = io.BytesIO()
    sf.write(buf, np.concatenate(beats), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def make_track_with_audio(*, n_beats: int = 32, seconds_per_beat: float = 0.25, source_sample_rate: int = ANALYSIS_SR,
                          channels: int = 1, lead_in_seconds: float = 0.0) -> Track:
    """A track with stored audio (one tone per beat, as ``tone_wav``) and an analysis whose beat grid is exact.

    The source is WAV at ``source_sample_rate`` with ``channels`` (a stereo source's right channel an
    octave below its left), opening with ``lead_in_seconds`` of soft noise before its first beat.
    Features are zeros: enough to render passages of it, not to train on it.
    """
    track = make_track(n_beats=n_beats, tempo_bpm=60.0 / seconds_per_beat)
    samples_per_beat = int(round(seconds_per_beat * ANALYSIS_SR))
    lead_in = int(round(lead_in_seconds * ANALYSIS_SR))
    left, _ = sf.read(io.BytesIO(tone_wav(range(n_beats), seconds_per_beat=seconds_per_beat,
                                          sample_rate=source_sample_rate)), dtype="float32")
    right, _ = sf.read(io.BytesIO(tone_wav(range(-12, n_beats - 12), seconds_per_beat=seconds_per_beat,
                                           sample_rate=source_sample_rate)), dtype="float32")
    # A third channel and beyond (a surround source) repeat the left one.
    samples = np.stack([left, right] + [left] * max(0, channels - 2), axis=1)[:, :channels]
    noise = np.random.default_rng(0).standard_normal((int(round(lead_in_seconds * source_sample_rate)), channels))
    samples = np.concatenate([(0.05 * noise).astype(np.float32), samples])
    buf = io.BytesIO()
    sf.write(buf, samples, source_sample_rate, format="WAV", subtype="PCM_16")
    audio = default_storage.save(f"tracks/audio/{track.content_hash}.wav", ContentFile(buf.getvalue()))
    buf = io.BytesIO()
    np.savez(buf, beat_samples=lead_in + np.arange(n_beats + 1, dtype=np.int64) * samples_per_beat,
             bar_positions=(np.arange(n_beats) % BEATS_PER_BAR).astype(np.int8),
             features=np.zeros((n_beats, N_AUDIO_FEATURES), np.float32), tempo_bpm=np.float64(track.tempo_bpm),
             duration_seconds=np.float64(track.duration_seconds + lead_in_seconds),
             sample_rate=np.int64(ANALYSIS_SR), feature_version=np.str_(FEATURE_VERSION))
    analysis = default_storage.save(f"tracks/analysis/{track.content_hash}.npz", ContentFile(buf.getvalue()))
    Track.objects.filter(pk=track.pk).update(audio=audio, analysis=analysis, sample_rate=ANALYSIS_SR,
                                             source_sample_rate=source_sample_rate)
    track.refresh_from_db()
    return track


def make_edit(track: Track | None = None, track_beats=None, *, source: str = "baseline:test",
              seconds_per_beat: float = 0.25, excerpt_start: int = 0, native: bool = True) -> Edit:
    """An edit that plays ``track_beats`` (absolute track beat per output beat), with real audio and beat map.

    Seams are placed wherever the next output beat is not the next track beat.  With ``native``, its
    tone WAV stands for its native render too; without, the native render is made from the track's
    source when first needed (a track of ``make_track_with_audio``).
    """
    track = track or make_track()
    beats = [int(b) for b in (track_beats if track_beats is not None else range(excerpt_start, excerpt_start + 16))]
    starts = [round(i * seconds_per_beat, 5) for i in range(len(beats) + 1)]
    seams = [starts[i] for i in range(1, len(beats)) if beats[i] != beats[i - 1] + 1]
    key = uuid.uuid4().hex
    name = default_storage.save(f"edits/test/{key}.wav",
                                ContentFile(tone_wav(beats, seconds_per_beat=seconds_per_beat)))
    n_source = max(beats) - excerpt_start + 1
    return Edit.objects.create(
        track=track, source=source, excerpt_start_beat=excerpt_start, n_source_beats=n_source,
        actions=[0] * n_source, entries={"track_beats": beats}, actions_key=key, audio=name,
        duration_seconds=starts[-1],
        render={"sample_rate": SAMPLE_RATE, "beat_starts_seconds": starts, "track_beats": beats,
                "seam_seconds": seams, **({"native": _native(name, starts, beats, seams)} if native else {})},
    )


def _native(name: str, starts: list[float], beats: list[int], seams: list[float]) -> dict:
    """The tone WAV doubles as the edit's native render (``annotations.services.edit_native_ensure``'s
    description), so listening copies are encoded from it without a source to render."""
    return {"audio": name, "sample_rate": SAMPLE_RATE, "channels": 1, "source_subtype": "PCM_16",
            "subtype": "PCM_16", "duration_seconds": starts[-1], "lead_in_seconds": 0.0, "ring_out_seconds": 0.0,
            "beat_starts_seconds": starts, "track_beats": beats, "seam_seconds": seams}


def make_comparison(*, edit_a: Edit | None = None, edit_b: Edit | None = None, track: Track | None = None,
                    **fields) -> Comparison:
    """A comparison; without edits, a full 16-beat excerpt against the same with beats 4-7 cut."""
    if edit_a is None or edit_b is None:
        given = edit_a or edit_b
        track = given.track if given is not None else (track or make_track())
        edit_a = edit_a or make_edit(track, range(16))
        edit_b = edit_b or make_edit(track, [*range(4), *range(8, 16)])
    fields.setdefault("proposed_by", "test")
    return Comparison.objects.create(track=edit_a.track, edit_a=edit_a, edit_b=edit_b, **fields)


def make_assignment(annotator, comparison: Comparison, *, left_is_a: bool = True,
                    expires_in: timedelta = timedelta(minutes=30), **fields) -> Assignment:
    fields.setdefault("shown_at", timezone.now())
    return Assignment.objects.create(annotator=annotator, comparison=comparison, left_is_a=left_is_a,
                                     expires_at=timezone.now() + expires_in, **fields)


def make_judgement(annotator, comparison: Comparison, *, choice: str = "a", confidence: int = 3,
                   left_is_a: bool = True, created_at: datetime | None = None, **fields) -> Judgement:
    """A stored judgement with its completed assignment (bypasses the listening checks of the service)."""
    make_assignment(annotator, comparison, left_is_a=left_is_a, completed_at=timezone.now())
    left = comparison.edit_a if left_is_a else comparison.edit_b
    fields = {"seconds_a": 10.0, "seconds_b": 10.0, "switches": 2, "decision_seconds": 30.0, **fields}
    judgement = Judgement.objects.create(annotator=annotator, comparison=comparison, choice=choice,
                                         confidence=confidence, left_edit=left, **fields)
    if created_at is not None:
        # auto_now_add ignores a value given at create time.
        Judgement.objects.filter(pk=judgement.pk).update(created_at=created_at)
        judgement.refresh_from_db()
    return judgement


def assignment_age(assignment: Assignment, seconds: float) -> None:
    """Make ``assignment`` look given and shown ``seconds`` ago, so a test need not wait out the minimum listen."""
    then = timezone.now() - timedelta(seconds=seconds)
    Assignment.objects.filter(pk=assignment.pk).update(created_at=then, shown_at=then)


def listen_through_audio_view(client, annotator, shown: dict, *, aged_seconds: float = 60.0) -> None:
    """Fetch both sides of ``shown`` (the API's comparison) in full through the audio view, as the page does,
    and age the assignment past any minimum listen."""
    for side in ("left", "right"):
        response = client.get(shown[side]["audio_url"])
        assert response.status_code == 200, response
        b"".join(response.streaming_content)  # read to the end: the view records what it streamed
    assignment_age(Assignment.objects.get(annotator=annotator, comparison_id=shown["id"]), aged_seconds)


def listen_through_service(annotator, assignment: Assignment, *, aged_seconds: float = 60.0) -> None:
    """Record both edits of ``assignment`` as served in full (``annotations.listening``), and age it."""
    from annotations.listening import listening_record

    comparison = assignment.comparison
    for edit in (comparison.edit_a, comparison.edit_b):
        size = edit.audio.size
        listening_record(annotator=annotator, edit_id=edit.pk, first_byte=0, n_bytes=size, file_bytes=size)
    assignment_age(assignment, aged_seconds)
