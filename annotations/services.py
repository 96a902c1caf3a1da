"""Write-side services of the annotations app: ingest tracks, create edits and comparisons.

Every entry point (admin, API, management commands, Celery tasks) calls these
functions, so the browser, the command line and a worker behave alike.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np
import soundfile as sf
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Q

from editing import audio as audio_lib
from editing.demo import read_beats
from editing.edit import Edit as EditValue
from editing.edit import EditError, apply_actions, unedited, validate_edit
from editing.listening import FORMATS as LISTENING_FORMATS
from editing.listening import MP3 as LEGACY_MP3
from editing.listening import encode_listening, write_legacy_mp3

from .errors import AnnotationError
from .jobs import job_storing
from .models import Comparison, Edit, ListeningCopy, Passage, Track

logger = logging.getLogger(__name__)


class ComparisonError(AnnotationError, ValueError):
    """A comparison that cannot be made (edits of different tracks, the same edit twice, ...)."""

    code = "invalid_comparison"


def _storage_path(*parts: str) -> str:
    return "/".join(parts)


def track_ingest(*, path: str | os.PathLike, title: str | None = None,
                 max_seconds: float | None = None) -> tuple[Track, bool]:
    """Analyse an audio file and store it as a Track, or return the Track that has the same content.

    Nothing is half-stored: the audio and analysis files are saved first, the
    row is created in a transaction, and the files are removed again if the
    row cannot be created.

    Parameters
    ----------
    path : path of a WAV, FLAC, OGG or MP3 file
    title : display title; defaults to the file name without extension
    max_seconds : longest accepted duration in seconds (default ``settings.MAX_TRACK_SECONDS``)

    Returns
    -------
    (track, created) : ``created`` is False when the same content was already ingested.

    Raises
    ------
    editing.audio.AudioError : the file is unsupported, corrupt, empty, silent, too short or too long.
    """
    path = Path(path)
    limit = settings.MAX_TRACK_SECONDS if max_seconds is None else max_seconds
    digest = audio_lib.file_sha256(path)
    existing = Track.objects.filter(content_hash=digest).first()
    if existing is not None:
        return existing, False

    analysis, _, source_sr = audio_lib.analyze_file(path, max_seconds=limit)

    suffix = path.suffix.lower()
    audio_name = _storage_path("tracks", "audio", f"{digest}{suffix}")
    analysis_name = _storage_path("tracks", "analysis", f"{digest}.npz")
    saved: list[str] = []
    try:
        with open(path, "rb") as fh:
            saved.append(default_storage.save(audio_name, File(fh)))
        with tempfile.TemporaryDirectory() as tmp:
            npz = Path(tmp) / "analysis.npz"
            analysis.save(npz)
            with open(npz, "rb") as fh:
                saved.append(default_storage.save(analysis_name, File(fh)))
        truth = path.parent / f"{path.stem}{TRUTH_SUFFIX}"
        if truth.is_file() and not default_storage.exists(_truth_name(digest)):
            # Ground truth beside the audio (the demo corpus writes it): kept for simulated listeners.
            with open(truth, "rb") as fh:
                saved.append(default_storage.save(_truth_name(digest), File(fh)))
        with transaction.atomic():
            track = Track.objects.create(
                title=title or path.stem,
                original_name=path.name,
                content_hash=digest,
                audio=saved[0],
                analysis=saved[1],
                sample_rate=analysis.sample_rate,
                source_sample_rate=source_sr,
                duration_seconds=analysis.duration_seconds,
                tempo_bpm=analysis.tempo_bpm,
                n_beats=analysis.n_beats,
                feature_version=analysis.feature_version,
            )
    except IntegrityError:
        # Another process ingested the same content between our check and insert.
        for name in saved:
            default_storage.delete(name)
        return Track.objects.get(content_hash=digest), False
    except BaseException:
        for name in saved:
            default_storage.delete(name)
        raise
    return track, True


TRUTH_SUFFIX = ".beats.txt"


def _truth_name(content_hash: str) -> str:
    return f"tracks/truth/{content_hash}{TRUTH_SUFFIX}"


def track_load_truth(track: Track) -> tuple[np.ndarray, np.ndarray] | None:
    """The track's ground-truth beats (seconds, bar positions), if its file came with ``NAME.beats.txt``; else None."""
    name = _truth_name(track.content_hash)
    if not default_storage.exists(name):
        return None
    with default_storage.open(name, "rb") as fh:
        return read_beats(fh)


def track_load_analysis(track: Track) -> audio_lib.TrackAnalysis:
    """The stored beat grid and features of ``track`` (refuses a different feature version)."""
    with track.analysis.open("rb") as fh:
        return audio_lib.TrackAnalysis.load(fh)


@contextlib.contextmanager
def _track_local_file(track: Track) -> Iterator[Path]:
    """A local path of the track's source file (a temporary copy, removed afterwards, for a remote storage)."""
    try:
        local = Path(track.audio.path)
    except NotImplementedError:
        local = None
    if local is not None:
        yield local
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(track.audio.name).name
        with open(local, "wb") as out, track.audio.open("rb") as src:
            shutil.copyfileobj(src, out)
        yield local


def track_load_audio(track: Track) -> np.ndarray:
    """The track's audio as mono float32 at the analysis rate, shape (n_samples,)."""
    with _track_local_file(track) as local:
        y, _ = audio_lib.load_audio(local, max_seconds=float("inf"))
    return y


def track_load_native(track: Track) -> audio_lib.NativeAudio:
    """The track's source at its own rate and channels (refuses more than two channels and 8-bit samples)."""
    with _track_local_file(track) as local:
        return audio_lib.load_native(local, name=track.original_name or track.title)


def track_sound_edges(track: Track, analysis: audio_lib.TrackAnalysis | None = None) -> audio_lib.SoundEdges:
    """The track's lead-in and ring-out (sound before its first beat and after its last), read from those parts only."""
    analysis = analysis if analysis is not None else track_load_analysis(track)
    with _track_local_file(track) as local:
        return audio_lib.file_sound_edges(local, analysis.beat_samples, analysis.sample_rate,
                                          name=track.original_name or track.title)


# The legacy listening rendition (``ANNOTATION_AUDIO_FORMAT = "mp3"``): the edit's analysis-rate mono
# rendering as MP3, about 25 kB for a 20 s edit.  It hides exactly the seam artefacts (a click, a smeared
# transient, a jumping stereo image) annotators are asked to hear, so the default is now a copy of the
# native render (``LISTENING_FORMATS``, ``edit_listening_copy_ensure``).
LISTENING_SUFFIX = LEGACY_MP3.suffix


def _listening_name(wav_name: str) -> str:
    return str(Path(wav_name).with_suffix(LISTENING_SUFFIX))


def edit_listening_audio_ensure(*, edit: Edit) -> Edit:
    """Give ``edit`` its compressed listening copy if it has none (edits stored before copies existed).

    The WAV stays the master; the copy is encoded from it, saved, and recorded
    only if no other request recorded one meanwhile (the loser's file is removed).
    """
    if edit.listening_audio:
        return edit
    with edit.audio.open("rb") as fh:
        audio, sample_rate = sf.read(fh, dtype="float32", always_2d=False)
    _derived_file_store(
        write=lambda local: write_legacy_mp3(local, audio, sample_rate), suffix=LISTENING_SUFFIX,
        name=_listening_name(edit.audio.name),
        record=lambda saved: bool(Edit.objects.filter(pk=edit.pk, listening_audio="").update(listening_audio=saved)))
    edit.refresh_from_db(fields=["listening_audio"])
    return edit


def _derived_file_store(*, write: Callable[[Path], None], suffix: str, name: str,
                        record: Callable[[str], bool], scratch: Path | None = None) -> None:
    """Store a file derived from an edit or a passage (``write`` makes it locally) as ``name``, then ``record`` it.

    ``record(saved_name)`` returns False when another process recorded its own copy first; the
    loser's file is then removed, and so is a file whose recording failed.  ``scratch``: the
    running job's scratch folder, which holds the local file and notes the stored one
    (``annotations.jobs.job_storing``), so a job killed in between leaves nothing behind.
    """
    saved = None
    try:
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            local = Path(tmp) / f"derived{suffix}"
            write(local)
            saved = _store_noted(name, local, scratch)
        won = record(saved)
    except BaseException:
        if saved:
            default_storage.delete(saved)
        raise
    if not won:
        default_storage.delete(saved)


def _store_noted(name: str, local: Path, scratch: Path | None) -> str:
    """Store the local file ``local`` as ``name`` (or a free variant, which is returned), noted in ``scratch`` first."""
    job_storing(scratch, name)
    with open(local, "rb") as fh:
        saved = default_storage.save(name, File(fh))
    if saved != name:
        job_storing(scratch, saved)
    return saved


def edit_files_unreferenced_remove(names: list[str]) -> list[str]:
    """Remove the stored files among ``names`` that no edit refers to (its audio, listening copy or native
    rendering): what a job killed between storing an edit's files and committing its row left.  Returns them."""
    removed = []
    for name in dict.fromkeys(names):
        if Edit.objects.filter(Q(audio=name) | Q(listening_audio=name) | Q(render__native__audio=name)).exists():
            continue
        if default_storage.exists(name):
            default_storage.delete(name)
            removed.append(name)
    return removed


def edit_create(*, track: Track, actions: list[int], excerpt_start: int, n_source_beats: int, source: str,
                target_beats: int, analysis: audio_lib.TrackAnalysis | None = None,
                y: np.ndarray | None = None, scratch: Path | None = None) -> Edit:
    """Build, render and store a retarget edit of a passage of ``track``; an identical edit is reused.

    Parameters
    ----------
    actions : one action id per middle step (see ``editing.edit.Action``)
    excerpt_start : first beat of the passage, as a track beat index
    n_source_beats : length of the passage in source beats
    source : what made the edit, e.g. ``"policy:v3"`` or ``"baseline:random"``
    target_beats : the exact output length, in beats
    analysis, y : the track's analysis and audio when the caller already has them (saves loading)
    scratch : the running job's scratch folder (``annotations.jobs.job_scratch``): the local files are
        written there and the stored ones noted first, so recovery can remove what a killed job stored

    Raises
    ------
    editing.edit.EditError : the actions do not make a valid edit of this track.
    """
    analysis = analysis if analysis is not None else track_load_analysis(track)
    if excerpt_start < 0 or excerpt_start + n_source_beats > analysis.n_beats:
        raise EditError(
            f"{track}: excerpt of {n_source_beats} beats from beat {excerpt_start} "
            f"does not fit the track's {analysis.n_beats} beats"
        )
    edit = apply_actions(actions, excerpt_start=excerpt_start,
                         bar_positions=analysis.bar_positions[excerpt_start: excerpt_start + n_source_beats],
                         target_beats=target_beats)
    validate_edit(edit, n_track_beats=analysis.n_beats)
    key = edit.key()
    existing = Edit.objects.filter(track=track, actions_key=key).first()
    if existing is not None:
        return existing

    # Imported here: rendering pulls in scipy.signal (some 80 MB), which the site's web
    # processes and exports never need; workers and commands that render pay it once.
    from editing.render import render_edit, write_audio

    y = y if y is not None else track_load_audio(track)
    result = render_edit(y, analysis.sample_rate, analysis.beat_samples, edit)
    name = _storage_path("edits", f"track{track.pk}", f"{key[:32]}.wav")
    saved = listening = None
    try:
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            wav = Path(tmp) / "edit.wav"
            write_audio(wav, result.audio, result.sample_rate)
            saved = _store_noted(name, wav, scratch)
            compressed = Path(tmp) / f"edit{LISTENING_SUFFIX}"
            write_legacy_mp3(compressed, result.audio, result.sample_rate)
            listening = _store_noted(_listening_name(saved), compressed, scratch)
        with transaction.atomic():
            row = Edit.objects.create(
                track=track,
                source=source,
                excerpt_start_beat=excerpt_start,
                n_source_beats=edit.n_source_beats,
                target_beats=target_beats,
                actions=list(edit.actions),
                entries=edit.to_json(),
                actions_key=key,
                audio=saved,
                listening_audio=listening,
                duration_seconds=len(result.audio) / result.sample_rate,
                render={
                    "sample_rate": result.sample_rate,
                    "beat_starts_seconds": [round(float(t), 5) for t in result.beat_starts_seconds],
                    "track_beats": [int(b) for b in result.track_beats],
                    "seam_seconds": [round(float(t), 5) for t in result.seam_seconds],
                },
            )
    except IntegrityError:
        for stored in (saved, listening):
            if stored:
                default_storage.delete(stored)
        return Edit.objects.get(track=track, actions_key=key)
    except BaseException:
        for stored in (saved, listening):
            if stored:
                default_storage.delete(stored)
        raise
    return row


def _comparison_passage(comparison: Comparison) -> Passage:
    """The unedited passage both edits of ``comparison`` were made from (one row per track, start and length)."""
    edit = comparison.edit_a
    passage, _ = Passage.objects.get_or_create(track_id=comparison.track_id,
                                               excerpt_start_beat=edit.excerpt_start_beat,
                                               n_source_beats=edit.n_source_beats)
    return passage


def _passage_unedited(passage: Passage) -> tuple[audio_lib.TrackAnalysis, EditValue]:
    """The track's analysis and the edit that keeps every beat of ``passage``; EditError where it does not fit."""
    track = passage.track
    analysis = track_load_analysis(track)
    start, n = passage.excerpt_start_beat, passage.n_source_beats
    if start + n > analysis.n_beats:
        raise EditError(f"{track}: passage of {n} beats from beat {start} does not fit the track's "
                        f"{analysis.n_beats} beats")
    return analysis, unedited(excerpt_start=start, bar_positions=analysis.bar_positions[start: start + n])


def passage_listening_ensure(*, comparison: Comparison) -> Passage:
    """The unedited source passage that ``comparison``'s edits were cut from, rendered for listening if not yet.

    The passage is the edits' own (same start beat and length in beats).  It
    is rendered from the track's audio through ``editing.render.render_edit``,
    as the edit that keeps every beat (``editing.edit.unedited``), so it gets
    the edits' loudness normalisation and a beat map of the same form, then
    stored as MP3 like their legacy listening copies (``ANNOTATION_AUDIO_FORMAT
    = "mp3"``; the other formats use ``passage_listening_copy_ensure``) and
    recorded only if no other request recorded one meanwhile (the loser's file
    is removed).

    Raises
    ------
    editing.edit.EditError : the passage does not fit the track's beats.
    """
    passage = _comparison_passage(comparison)
    if passage.listening_audio:
        return passage
    from editing.render import render_edit  # scipy.signal: see edit_create

    track = comparison.track
    analysis, value = _passage_unedited(passage)
    start, n = passage.excerpt_start_beat, passage.n_source_beats
    result = render_edit(track_load_audio(track), analysis.sample_rate, analysis.beat_samples, value)
    _derived_file_store(
        write=lambda local: write_legacy_mp3(local, result.audio, result.sample_rate), suffix=LISTENING_SUFFIX,
        name=_storage_path("passages", f"track{track.pk}", f"{start}-{n}{LISTENING_SUFFIX}"),
        record=lambda saved: bool(Passage.objects.filter(pk=passage.pk, listening_audio="").update(
            listening_audio=saved, duration_seconds=result.duration_seconds,
            render={"sample_rate": result.sample_rate,
                    "beat_starts_seconds": [round(float(t), 5) for t in result.beat_starts_seconds],
                    "track_beats": [int(b) for b in result.track_beats]})))
    passage.refresh_from_db()
    return passage


NATIVE_SUFFIX = "-native.wav"


def edit_native_ensure(*, edit: Edit, analysis: audio_lib.TrackAnalysis | None = None,
                       scratch: Path | None = None) -> dict[str, Any]:
    """Give ``edit`` its native rendering if it has none, and return its description (``edit.render["native"]``).

    The native rendering is what a retarget delivers: rendered from the track's source at its own
    sample rate and channels, opening with the track's lead-in when the edit opens with its first
    beat and closing with its ring-out when it closes with its last (``editing.render.render_native``),
    stored as WAV in the source's sample format (``editing.audio.delivery_subtype``).  Annotators
    hear it too, encoded as Opus or FLAC (``edit_listening_copy_ensure``); the edit's own rendering
    (analysis rate, mono) is what the reward features read and the legacy MP3 copy is made from.
    ``scratch``: as for ``edit_create``.

    Returns
    -------
    dict
        ``audio`` (the stored WAV's name), ``sample_rate``, ``channels``, ``source_subtype``,
        ``subtype``, ``duration_seconds``, ``lead_in_seconds``, ``ring_out_seconds``, and the
        timeline (``beat_starts_seconds``, ``track_beats``, ``seam_seconds``) in the native file's seconds.

    Raises
    ------
    editing.audio.AudioError
        The source cannot be rendered at its own fidelity (more than two channels, 8-bit), or not decoded.
    """
    if "native" in edit.render:
        return edit.render["native"]
    from editing.render import render_native, write_audio  # scipy.signal: see edit_create

    analysis = analysis if analysis is not None else track_load_analysis(edit.track)
    source = track_load_native(edit.track)
    result = render_native(source.samples, source.sample_rate, analysis.beat_samples, analysis.sample_rate,
                           EditValue.from_json(edit.entries))
    subtype = audio_lib.delivery_subtype(source.subtype, "WAV")

    def record(saved: str) -> bool:
        native = {
            "audio": saved,
            "sample_rate": result.sample_rate,
            "channels": source.channels,
            "source_subtype": source.subtype,
            "subtype": subtype,
            "duration_seconds": round(result.duration_seconds, 5),
            "lead_in_seconds": round(float(result.beat_starts_seconds[0]), 5),
            "ring_out_seconds": round(result.duration_seconds - float(result.beat_starts_seconds[-1]), 5),
            "beat_starts_seconds": [round(float(t), 5) for t in result.beat_starts_seconds],
            "track_beats": [int(b) for b in result.track_beats],
            "seam_seconds": [round(float(t), 5) for t in result.seam_seconds],
        }
        # Recorded only if no other process recorded one meanwhile.
        return bool(Edit.objects.filter(pk=edit.pk).exclude(render__has_key="native").update(
            render={**edit.render, "native": native}))

    _derived_file_store(write=lambda local: write_audio(local, result.audio, result.sample_rate, subtype=subtype),
                        suffix=".wav", name=str(Path(edit.audio.name).with_suffix("")) + NATIVE_SUFFIX,
                        record=record, scratch=scratch)
    edit.refresh_from_db(fields=["render"])
    return edit.render["native"]


def edit_native_write(*, edit: Edit, out: str | os.PathLike | IO[bytes], container: str) -> None:
    """Write the edit's native rendering (made if missing) to ``out`` as ``container`` ("WAV" or "FLAC").

    The sample format follows the source's (``editing.audio.delivery_subtype``): 16/24-bit as the
    source, float where the source is float (24-bit in FLAC).
    """
    native = edit_native_ensure(edit=edit)
    with default_storage.open(native["audio"], "rb") as fh:
        audio, sample_rate = sf.read(fh, dtype="float32" if native["subtype"] != "DOUBLE" else "float64")
    sf.write(out, audio, sample_rate, format=container,
             subtype=audio_lib.delivery_subtype(native["source_subtype"], container))


def listening_format() -> str:
    """The format annotators hear: ``settings.ANNOTATION_AUDIO_FORMAT`` ("opus", "flac" or the legacy "mp3")."""
    return settings.ANNOTATION_AUDIO_FORMAT


def _listening_copy_store(*, fmt: str, audio: np.ndarray, sample_rate: int, source_subtype: str,
                          timeline: dict[str, Any], name: str, owner: dict[str, Any]) -> ListeningCopy:
    """Encode ``audio`` (the native render) as ``fmt``, store it as ``name`` and record it for ``owner``.

    ``owner`` is ``{"edit": edit}`` or ``{"passage": passage}``.  The row is unique per owner and
    format: a request that loses the race to another removes its file and returns the winner's row.
    """
    saved = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / f"listening{LISTENING_FORMATS[fmt].suffix}"
            encoded = encode_listening(local, audio, sample_rate, fmt,
                                       flac_subtype=audio_lib.delivery_subtype(source_subtype, "FLAC"))
            with open(local, "rb") as fh:
                saved = default_storage.save(name, File(fh))
        with transaction.atomic():
            return ListeningCopy.objects.create(
                format=fmt, audio=saved, sample_rate=encoded.sample_rate, source_sample_rate=sample_rate,
                channels=encoded.channels, duration_seconds=round(encoded.duration_seconds, 5),
                render=timeline, **owner)
    except IntegrityError:
        default_storage.delete(saved)
        return ListeningCopy.objects.get(format=fmt, **owner)
    except BaseException:
        if saved:
            default_storage.delete(saved)
        raise


def edit_listening_copy_ensure(*, edit: Edit, fmt: str | None = None) -> ListeningCopy:
    """The copy of ``edit`` annotators hear as ``fmt`` (default ``listening_format()``), encoded if not yet.

    Encoded from the edit's native render (``edit_native_ensure``, made first if missing): the
    source's sample rate (48 kHz for Opus, see ``editing.listening``) and channels, and the native
    timeline, which includes the track's lead-in and ring-out where the edit keeps them.

    Raises
    ------
    editing.audio.AudioError : the source cannot be rendered at its own fidelity.
    """
    fmt = fmt or listening_format()
    if fmt not in LISTENING_FORMATS:
        raise ValueError(f"listening copy of edit {edit.pk}: {fmt!r} is not one of {sorted(LISTENING_FORMATS)}")
    existing = ListeningCopy.objects.filter(edit=edit, format=fmt).first()
    if existing is not None:
        return existing
    native = edit_native_ensure(edit=edit)
    with default_storage.open(native["audio"], "rb") as fh:
        audio, sample_rate = sf.read(fh, dtype="float32")
    timeline = {key: native[key] for key in ("beat_starts_seconds", "track_beats", "seam_seconds")}
    return _listening_copy_store(
        fmt=fmt, audio=audio, sample_rate=sample_rate, source_subtype=native["source_subtype"], timeline=timeline,
        name=str(Path(edit.audio.name).with_suffix("")) + "-listening" + LISTENING_FORMATS[fmt].suffix,
        owner={"edit": edit})


def passage_listening_copy_ensure(*, comparison: Comparison, fmt: str | None = None) -> ListeningCopy:
    """The unedited passage of ``comparison``'s edits as annotators hear it in ``fmt``, encoded if not yet.

    Rendered from the track's source like the edits' copies (``editing.render.render_native`` of the
    edit that keeps every beat): the same rate, channels, loudness normalisation and encoder, and a
    timeline of the same form, so the page maps the playhead between A, B and the original.

    Raises
    ------
    editing.edit.EditError : the passage does not fit the track's beats.
    editing.audio.AudioError : the source cannot be rendered at its own fidelity.
    """
    fmt = fmt or listening_format()
    passage = _comparison_passage(comparison)
    existing = ListeningCopy.objects.filter(passage=passage, format=fmt).first()
    if existing is not None:
        return existing
    from editing.render import render_native  # scipy.signal: see edit_create

    track = comparison.track
    analysis, value = _passage_unedited(passage)
    source = track_load_native(track)
    result = render_native(source.samples, source.sample_rate, analysis.beat_samples, analysis.sample_rate, value)
    timeline = {"beat_starts_seconds": [round(float(t), 5) for t in result.beat_starts_seconds],
                "track_beats": [int(b) for b in result.track_beats],
                "seam_seconds": [round(float(t), 5) for t in result.seam_seconds]}
    return _listening_copy_store(
        fmt=fmt, audio=result.audio, sample_rate=result.sample_rate, source_subtype=source.subtype,
        timeline=timeline,
        name=_storage_path("passages", f"track{track.pk}",
                           f"{passage.excerpt_start_beat}-{passage.n_source_beats}-native{LISTENING_FORMATS[fmt].suffix}"),
        owner={"passage": passage})


def comparison_create(*, edit_a: Edit, edit_b: Edit, proposed_by: str, priority: float = 0.0,
                      predicted_preference: float | None = None, reward_model_version: str = "",
                      required_judgements: int | None = None, is_gold: bool = False,
                      gold_answer: str = "", repeat_of: Comparison | None = None) -> Comparison:
    """Pair two edits of the same passage, made for the same target, for judgement."""
    if edit_a.pk == edit_b.pk or edit_a.actions_key == edit_b.actions_key:
        raise ComparisonError(f"edit {edit_a.pk} cannot be compared with itself (a hidden reference can: "
                              f"hidden_reference_create)")
    if edit_a.track_id != edit_b.track_id:
        raise ComparisonError(
            f"edits {edit_a.pk} and {edit_b.pk} belong to different tracks ({edit_a.track} / {edit_b.track})"
        )
    task_a = (edit_a.excerpt_start_beat, edit_a.n_source_beats, edit_a.target_beats)
    task_b = (edit_b.excerpt_start_beat, edit_b.n_source_beats, edit_b.target_beats)
    if task_a != task_b:
        raise ComparisonError(
            f"edits {edit_a.pk} and {edit_b.pk} retarget different tasks (start beat, beats, target: "
            f"{task_a} / {task_b}): both edits of a comparison share their passage and target"
        )
    if is_gold and gold_answer not in ("a", "b"):
        raise ComparisonError("a gold comparison needs its known answer, 'a' or 'b'")
    # None: the model's default (``Comparison.required_judgements``), its one home.
    asked = {} if required_judgements is None else {"required_judgements": required_judgements}
    return Comparison.objects.create(
        track=edit_a.track, edit_a=edit_a, edit_b=edit_b, proposed_by=proposed_by, priority=priority,
        predicted_preference=predicted_preference, reward_model_version=reward_model_version,
        is_gold=is_gold, gold_answer=gold_answer, repeat_of=repeat_of, **asked,
    )


def hidden_reference_create(*, edit: Edit, proposed_by: str, priority: float = 0.0,
                            required_judgements: int | None = None) -> Comparison:
    """A hidden reference: ``edit`` against itself, shown as any comparison (MUSHRA's hidden reference).

    Both sides play the same audio, so the right answer is a tie or a low confidence; the
    judgements measure each annotator's reliability (``annotations.quality``).  It is gold
    without an A/B answer, so everything that keeps gold out of training keeps it out too.
    """
    asked = {} if required_judgements is None else {"required_judgements": required_judgements}
    return Comparison.objects.create(
        track=edit.track, edit_a=edit, edit_b=edit, proposed_by=proposed_by, priority=priority, is_gold=True,
        is_hidden_reference=True, **asked,
    )



def _downbeat_at_or_before(bar_positions: np.ndarray, beat: int) -> int:
    while beat > 0 and bar_positions[beat] != 0:
        beat -= 1
    return beat


def baseline_comparisons_create(*, track: Track, n_excerpts: int, seed: int, proposed_by: str = "baselines",
                                excerpt_beats: int | None = None, with_gold: bool = True,
                                with_hidden_reference: bool = False) -> list[Comparison]:
    """Propose comparisons between baseline retargets of passages of ``track`` (no policy needed).

    For each passage (spread evenly over the track, starting on a downbeat) the target
    alternates between shortening to 0.75x and lengthening to 1.5x; the retargeting
    heuristic is compared with the bar-aligned cut and with random actions.  With
    ``with_gold``, a gold comparison of the heuristic against a deliberately broken edit,
    whose known answer checks the annotators.  With ``with_hidden_reference``, the heuristic's edit
    against itself (``hidden_reference_create``), whose right answer is a tie.
    """
    from editing.baselines import BASELINE_EDIT_SOURCES, BAR_CUT, BROKEN, HEURISTIC, RANDOM, baseline_actions
    from editing.dense import dense_context
    from editing.edit import DEFAULT_EXCERPT_BEATS
    from editing.edit import reachable_target

    analysis = track_load_analysis(track)
    y = track_load_audio(track)
    context = dense_context(analysis.features, analysis.beat_samples, analysis.bar_positions)
    n_beats = min(excerpt_beats or DEFAULT_EXCERPT_BEATS, analysis.n_beats)
    rng = np.random.default_rng(seed)
    starts = np.linspace(0, analysis.n_beats - n_beats, num=max(1, n_excerpts)).astype(int)
    created: list[Comparison] = []
    for k, start in enumerate(starts):
        start = _downbeat_at_or_before(analysis.bar_positions, int(start))
        bars = analysis.bar_positions[start: start + n_beats]
        target = reachable_target(bars, round((0.75 if k % 2 == 0 else 1.5) * n_beats))
        common = dict(track=track, excerpt_start=start, n_source_beats=n_beats, target_beats=target,
                      analysis=analysis, y=y)

        def make(name: str) -> Edit:
            actions = baseline_actions(name, rng=rng, context=context, excerpt_start=start, bar_positions=bars,
                                       target_beats=target)
            return edit_create(actions=actions, source=BASELINE_EDIT_SOURCES[name], **common)

        heuristic, cut, rand = make(HEURISTIC), make(BAR_CUT), make(RANDOM)
        for other in (cut, rand):
            if other.pk != heuristic.pk:
                created.append(comparison_create(edit_a=heuristic, edit_b=other, proposed_by=proposed_by))
        if with_gold:
            broken = make(BROKEN)
            if broken.pk != heuristic.pk:
                created.append(comparison_create(edit_a=broken, edit_b=heuristic, proposed_by=proposed_by,
                                                  is_gold=True, gold_answer="b"))
        if with_hidden_reference:
            created.append(hidden_reference_create(edit=heuristic, proposed_by=proposed_by))
    return created
