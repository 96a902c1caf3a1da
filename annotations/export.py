"""Export judgements as a preference dataset: JSONL, CSV or Parquet, streamed, with a dataset card.

One row per judgement (columns in ``COLUMNS``, schema ``SCHEMA_VERSION``).
Rows are tuples in column order, produced by a generator that walks the
judgements in id order with ``.iterator(chunk_size=...)`` (a server-side
cursor on PostgreSQL) and looks up the edits of each chunk in one query
through a bounded cache, so memory stays flat however many rows there are
(measured: see ``bench/bench_export.py``).

``choice`` is the raw answer ("a", "b", "tie").  ``chosen_edit_id`` /
``rejected_edit_id`` are the preferred and the other edit; for a tie,
``tie`` is true and they are edit A and edit B, in that order.
``left_side`` says which of A and B was shown on the left.
``seconds_a``, ``seconds_b``, ``switches`` and ``decision_seconds`` are what
the annotator's client reported (seconds capped at the wall time the server
measured); ``served_seconds_a`` / ``served_seconds_b`` (audio the server sent
of each edit) and ``wall_seconds`` (assignment to submit) are measured by the
server, and empty for judgements stored before it measured them.
``original_heard`` says whether the server served the unedited source passage
(the annotate page's optional Original) to the annotator before the submit;
false for judgements stored before the page offered it.

The dataset card (``card``: counts, Krippendorff's alpha over the exported
rows, filters, schema version, creation time) is written next to every file
as ``NAME.card.json`` (``prefs.jsonl`` -> ``prefs.card.json``); the streamed
API serves it from its own endpoint.  Files are written to a temporary file
in the target folder and moved into place with ``os.replace``, so a reader
never sees half a file.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import tempfile
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import quality
from .dispatch import export_enqueue
from .errors import AnnotationError, DomainError
from .jobs import JobKind, job_run, job_scratch
from .models import Edit, ExportJob, Judgement
from .selectors import ExportFilters, judgements_for_export

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "preferences-v3"  # v2: the server-measured listening columns; v3: original_heard
DEFAULT_CHUNK_SIZE = 5000
PARQUET_ROW_GROUP_SIZE = 5000
EDIT_CACHE_SIZE = 20_000  # edits kept between chunks
FORMATS = ("jsonl", "csv", "parquet")
STREAMABLE_FORMATS = ("jsonl", "csv")  # Parquet's footer needs the whole file: use an export job
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv", "parquet": "application/vnd.apache.parquet"}

# name -> kind; the kinds say how CSV text decodes back to values.
COLUMN_KINDS: dict[str, str] = {
    "judgement_id": "int",
    "comparison_id": "int",
    "track_id": "int",
    "track_title": "str",
    "proposed_by": "str",
    "edit_a_id": "int",
    "edit_a_source": "str",
    "edit_a_actions": "actions",
    "edit_a_audio": "str",
    "edit_b_id": "int",
    "edit_b_source": "str",
    "edit_b_actions": "actions",
    "edit_b_audio": "str",
    "choice": "str",
    "tie": "bool",
    "chosen_edit_id": "int",
    "rejected_edit_id": "int",
    "confidence": "int",
    "annotator_id": "int",
    "left_edit_id": "int",
    "left_side": "str",
    "seconds_a": "float",
    "seconds_b": "float",
    "switches": "int",
    "decision_seconds": "float",
    "served_seconds_a": "optional_float",
    "served_seconds_b": "optional_float",
    "wall_seconds": "optional_float",
    "original_heard": "bool",
    "created_at": "datetime",
    "predicted_preference": "optional_float",
    "is_gold": "bool",
}
COLUMNS = tuple(COLUMN_KINDS)
_ARROW_TYPES = {
    "int": pa.int64(),
    "str": pa.string(),
    "actions": pa.list_(pa.int8()),
    "bool": pa.bool_(),
    "float": pa.float64(),
    "optional_float": pa.float64(),
    "datetime": pa.timestamp("us", tz="UTC"),
}
PARQUET_SCHEMA = pa.schema(
    [pa.field(name, _ARROW_TYPES[kind], nullable=kind == "optional_float") for name, kind in COLUMN_KINDS.items()],
    metadata={"schema_version": SCHEMA_VERSION},
)

_JUDGEMENT_FIELDS = (
    "id", "comparison_id", "comparison__track_id", "comparison__track__title", "comparison__proposed_by",
    "comparison__edit_a_id", "comparison__edit_b_id", "comparison__predicted_preference", "comparison__is_gold",
    "choice", "confidence", "annotator_id", "left_edit_id", "seconds_a", "seconds_b", "switches",
    "decision_seconds", "served_seconds_a", "served_seconds_b", "wall_seconds", "original_heard", "created_at",
)


class ExportError(AnnotationError, ValueError):
    """An export was asked for something it cannot do; the message says what and why."""

    code = "invalid_export"


def check_format(fmt: str, *, streamed: bool = False) -> str:
    allowed = STREAMABLE_FORMATS if streamed else FORMATS
    if fmt not in allowed:
        how = "a streamed export" if streamed else "an export"
        raise ExportError(f"format {fmt!r} is not available for {how}; choose one of {', '.join(allowed)}")
    return fmt


def _batches(iterator: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in iterator:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


Record = tuple  # one export row, values in ``COLUMNS`` order
_AT = {name: i for i, name in enumerate(COLUMNS)}


def as_dict(record: Record) -> dict[str, Any]:
    return dict(zip(COLUMNS, record))


def iter_records(queryset: QuerySet[Judgement], *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[Record]:
    """Export rows for ``queryset`` as tuples in ``COLUMNS`` order, in its order, in flat memory.

    Tuples rather than dicts: a million rows pass through here, and every
    writer wants the values in column order anyway.
    """
    values = queryset.values_list(*_JUDGEMENT_FIELDS).iterator(chunk_size=chunk_size)
    # Edits recur across neighbouring judgements (several per comparison): keep the
    # recent ones, bounded so memory stays flat over any number of edits.
    edits: dict[int, tuple[str, list[int], str]] = {}
    for batch in _batches(values, chunk_size):
        missing = ({r[5] for r in batch} | {r[6] for r in batch}) - edits.keys()
        if len(edits) + len(missing) > EDIT_CACHE_SIZE:
            edits.clear()
            missing = {r[5] for r in batch} | {r[6] for r in batch}
        edits.update(
            (pk, (source, actions, audio))
            for pk, source, actions, audio in Edit.objects.filter(id__in=missing).values_list(
                "id", "source", "actions", "audio"
            )
        )
        for (
            jid, cid, track_id, title, proposed_by, a_id, b_id, predicted, is_gold,
            choice, confidence, annotator_id, left_id, seconds_a, seconds_b, switches, decision,
            served_a, served_b, wall, original_heard, created_at,
        ) in batch:
            a_source, a_actions, a_audio = edits[a_id]
            b_source, b_actions, b_audio = edits[b_id]
            if choice == quality.CHOICE_B:
                chosen, rejected = b_id, a_id
            elif choice in (quality.CHOICE_A, quality.CHOICE_TIE):
                chosen, rejected = a_id, b_id
            else:
                raise ExportError(f"judgement {jid}: unknown choice {choice!r}")
            yield (
                jid, cid, track_id, title, proposed_by,
                a_id, a_source, a_actions, a_audio,
                b_id, b_source, b_actions, b_audio,
                choice, choice == quality.CHOICE_TIE, chosen, rejected, confidence, annotator_id,
                left_id, "a" if left_id == a_id else "b",
                seconds_a, seconds_b, switches, decision, served_a, served_b, wall, original_heard, created_at,
                predicted, is_gold,
            )


class CardBuilder:
    """Accumulates the dataset card while rows stream past (a few bytes per row)."""

    def __init__(self, *, filters: ExportFilters, fmt: str, dropped_annotators: tuple[int, ...] = ()) -> None:
        self.filters = filters
        self.fmt = fmt
        self.dropped_annotators = dropped_annotators
        self._comparisons = array("q")
        self._choices = array("b")
        self._annotators: set[int] = set()
        self._tracks: set[int] = set()
        self._sources: Counter[str] = Counter()
        self._n_gold = 0

    _COMPARISON, _CHOICE, _ANNOTATOR, _TRACK, _GOLD = (
        _AT["comparison_id"], _AT["choice"], _AT["annotator_id"], _AT["track_id"], _AT["is_gold"]
    )
    _CODES = {choice: code for code, choice in enumerate(quality.ALPHA_VALUES)}

    def watch(self, records: Iterable[Record]) -> Iterator[Record]:
        comparisons, choices, annotators, tracks = self._comparisons, self._choices, self._annotators, self._tracks
        for record in records:
            comparisons.append(record[self._COMPARISON])
            choices.append(self._CODES[record[self._CHOICE]])
            annotators.add(record[self._ANNOTATOR])
            tracks.add(record[self._TRACK])
            self._n_gold += record[self._GOLD]
            yield record

    def card(self) -> dict[str, Any]:
        comparisons = np.frombuffer(self._comparisons, dtype=np.int64)
        choices = np.frombuffer(self._choices, dtype=np.int8)
        alpha, n_pairable = quality.agreement_alpha(quality.choice_value_counts(comparisons, choices))
        n_per_choice = np.bincount(choices, minlength=len(quality.ALPHA_VALUES)) if choices.size else [0, 0, 0]
        return {
            "schema_version": SCHEMA_VERSION,
            "created_at": timezone.now().isoformat(),
            "format": self.fmt,
            "columns": list(COLUMNS),
            "filters": self.filters.to_json(),
            "excluded_annotators_low_gold_accuracy": list(self.dropped_annotators),
            "counts": {
                "rows": int(comparisons.size),
                "comparisons": int(np.unique(comparisons).size),
                "annotators": len(self._annotators),
                "tracks": len(self._tracks),
                "choices": {v: int(n) for v, n in zip(quality.ALPHA_VALUES, n_per_choice)},
                "gold_rows": int(self._n_gold),
            },
            "agreement": {
                "krippendorff_alpha": alpha,
                "level_of_measurement": quality.ALPHA_LEVEL,
                "values": list(quality.ALPHA_VALUES),
                "pairable_comparisons": n_pairable,
            },
        }


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def iter_jsonl(records: Iterable[Record], *, lines_per_chunk: int = 1000) -> Iterator[bytes]:
    """JSON Lines, one object per row, yielded as byte chunks of ``lines_per_chunk`` lines."""
    dumps = json.JSONEncoder(default=_json_default, ensure_ascii=False, separators=(",", ":")).encode
    for batch in _batches(iter(records), lines_per_chunk):
        yield ("\n".join([dumps(dict(zip(COLUMNS, record))) for record in batch]) + "\n").encode()


class _ActionsJson:
    """JSON text of an edit's action list, encoded once per edit (an edit recurs in many rows)."""

    MAX_ENTRIES = 50_000  # bounds memory on exports over very many edits

    def __init__(self) -> None:
        self._cache: dict[int, str] = {}

    def __call__(self, edit_id: int, actions: list[int]) -> str:
        text = self._cache.get(edit_id)
        if text is None:
            if len(self._cache) >= self.MAX_ENTRIES:
                self._cache.clear()
            text = self._cache[edit_id] = json.dumps(actions, separators=(",", ":"))
        return text


def iter_csv(records: Iterable[Record], *, lines_per_chunk: int = 1000) -> Iterator[bytes]:
    """CSV with a header row; action lists as JSON arrays, booleans as true/false, null as empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    actions_json = _ActionsJson()
    # csv writes None as an empty cell itself; only these columns need converting.
    bools = [_AT[name] for name, kind in COLUMN_KINDS.items() if kind == "bool"]
    times = [_AT[name] for name, kind in COLUMN_KINDS.items() if kind == "datetime"]
    actions = [(_AT[f"edit_{side}_actions"], _AT[f"edit_{side}_id"]) for side in ("a", "b")]

    def cells(record: Record) -> list[Any]:
        out = list(record)
        for i in bools:
            out[i] = "true" if out[i] else "false"
        for i in times:
            out[i] = out[i].isoformat()
        for i, id_index in actions:
            out[i] = actions_json(out[id_index], out[i])
        return out

    for batch in _batches(iter(records), lines_per_chunk):
        writer.writerows([cells(record) for record in batch])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()


def decode_csv_row(record: dict[str, str]) -> dict[str, Any]:
    """A CSV record (from ``csv.DictReader``) back to typed values, the inverse of ``iter_csv``."""
    from django.utils.dateparse import parse_datetime

    out: dict[str, Any] = {}
    for name, kind in COLUMN_KINDS.items():
        text = record[name]
        if kind == "int":
            out[name] = int(text)
        elif kind == "float":
            out[name] = float(text)
        elif kind == "optional_float":
            out[name] = float(text) if text else None
        elif kind == "bool":
            out[name] = text == "true"
        elif kind == "actions":
            out[name] = json.loads(text)
        elif kind == "datetime":
            out[name] = parse_datetime(text)
        else:
            out[name] = text
    return out


def write_parquet(
    records: Iterable[Record], sink: str | Path | BinaryIO, *, row_group_size: int = PARQUET_ROW_GROUP_SIZE
) -> None:
    """Parquet with ``PARQUET_SCHEMA``, one row group per ``row_group_size`` rows."""
    with pq.ParquetWriter(sink, PARQUET_SCHEMA, compression="zstd") as writer:
        for batch in _batches(iter(records), row_group_size):
            arrays = [pa.array(column, type=f.type) for column, f in zip(zip(*batch), PARQUET_SCHEMA)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=PARQUET_SCHEMA), row_group_size=row_group_size)


def write_records(records: Iterable[Record], fmt: str, fileobj: BinaryIO) -> None:
    """Write ``records`` to an open binary file in ``fmt``."""
    check_format(fmt)
    if fmt == "parquet":
        write_parquet(records, fileobj)
        return
    chunks = iter_jsonl(records) if fmt == "jsonl" else iter_csv(records)
    for chunk in chunks:
        fileobj.write(chunk)


def card_path_for(path: Path) -> Path:
    """``prefs.jsonl`` -> ``prefs.card.json``."""
    return path.with_name(f"{path.stem}.card.json")


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class ExportResult:
    path: Path
    card_path: Path
    n_rows: int
    card: dict[str, Any]


def export_to_file(
    *,
    filters: ExportFilters,
    fmt: str,
    path: str | Path,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_rows: Callable[[int], None] | None = None,
) -> ExportResult:
    """Export the judgements matching ``filters`` to ``path`` and its card to ``NAME.card.json``, atomically.

    ``on_rows(n)`` is called after every ``n`` rows (a progress bar's update).
    """
    check_format(fmt)
    path = Path(path)
    queryset, dropped = judgements_for_export(filters)
    builder = CardBuilder(filters=filters, fmt=fmt, dropped_annotators=dropped)

    def records() -> Iterator[Record]:
        n = 0
        for record in builder.watch(iter_records(queryset, chunk_size=chunk_size)):
            yield record
            n += 1
            if on_rows is not None and n == chunk_size:
                on_rows(n)
                n = 0
        if on_rows is not None and n:
            on_rows(n)

    # One transaction: a consistent snapshot, and PostgreSQL streams the server-side
    # cursor instead of materialising it as a WITH HOLD cursor must.
    with transaction.atomic():
        _atomic_write(path, lambda fh: write_records(records(), fmt, fh))
    card = builder.card()
    card["file"] = path.name
    card_path = card_path_for(path)
    _atomic_write(card_path, lambda fh: fh.write(json.dumps(card, indent=2).encode()))
    return ExportResult(path=path, card_path=card_path, n_rows=card["counts"]["rows"], card=card)


def export_card(*, filters: ExportFilters) -> dict[str, Any]:
    """The dataset card of a streamed export with these filters, without writing the data."""
    queryset, dropped = judgements_for_export(filters)
    builder = CardBuilder(filters=filters, fmt="stream", dropped_annotators=dropped)
    for _ in builder.watch(iter_records(queryset)):
        pass
    return builder.card()


def export_stream(*, filters: ExportFilters, fmt: str) -> Iterator[bytes]:
    """Byte chunks of a JSONL or CSV export, for a streaming HTTP response."""
    check_format(fmt, streamed=True)
    queryset, _ = judgements_for_export(filters)
    records = iter_records(queryset)
    return iter_jsonl(records) if fmt == "jsonl" else iter_csv(records)


def export_job_create(*, requested_by, fmt: str, filters: ExportFilters) -> ExportJob:
    """Record an export request; ``annotations.tasks.export_run`` does the work."""
    check_format(fmt)
    return ExportJob.objects.create(requested_by=requested_by, format=fmt, filters=filters.to_json())


def export_job_start(*, requested_by, fmt: str, filters: ExportFilters) -> ExportJob:
    """Record an export request and queue it once the row is committed.

    The API, the admin action and any script start exports here.  Queuing on
    commit means a worker (or the site's thread) never looks for a job row that
    its transaction has not yet made visible, and a rolled-back request queues
    nothing.
    """
    with transaction.atomic():
        job = export_job_create(requested_by=requested_by, fmt=fmt, filters=filters)
        transaction.on_commit(lambda: export_enqueue(job.pk))
    return job


def export_job_run(*, job_id: int) -> ExportJob:
    """Run a queued export job: write the file and its card into storage, mark it done.

    A failure is recorded on the job (status ``failed`` and the error) and
    logged, so the requester sees it on the job's status; it is not re-raised
    because the job row is the report.
    """
    return job_run(ExportJob, job_id, queued=ExportJob.Status.QUEUED, started=ExportJob.Status.RUNNING,
                   running=RUNNING, work=_export_job_write)


def _export_job_write(job: ExportJob) -> ExportJob:
    try:
        filters = ExportFilters.parse(job.filters)
        stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
        name = f"export-{job.pk}-{stamp}.{job.format}"
        with job_scratch(EXPORT_JOB_NAME, job.pk) as tmp:
            result = export_to_file(filters=filters, fmt=job.format, path=tmp / name)
            # Storage.save writes under a fresh name; the job points at it only once complete.
            with result.card_path.open("rb") as fh:
                default_storage.save(f"exports/{result.card_path.name}", File(fh))
            with result.path.open("rb") as fh:
                job.file.save(name, File(fh), save=False)
        ended = dict(file=job.file.name, n_rows=result.n_rows, card=result.card, status=ExportJob.Status.DONE)
    except Exception as exc:
        logger.exception("export %s failed", job.pk)
        # Shown to the requester: a refusal says why, anything else may name server paths.
        error = str(exc) if isinstance(exc, DomainError) else f"{type(exc).__name__} (details in the server log)"
        ended = dict(status=ExportJob.Status.FAILED, error=error)
    if not ExportJob.objects.filter(pk=job.pk, status__in=RUNNING).update(**ended, finished_at=timezone.now()):
        # Recovery ended it while this process was silent: its ending stands, and what this run wrote goes.
        _export_files_drop(job)
    job.refresh_from_db()
    return job


EXPORT_JOB_NAME = "export"
RUNNING = (ExportJob.Status.RUNNING,)


def _export_files_drop(job: ExportJob) -> None:
    """Remove every file export ``job`` wrote to storage (its data file and card, whole or partial)."""
    try:
        _, names = default_storage.listdir("exports")
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(f"export-{job.pk}-"):
            default_storage.delete(f"exports/{name}")


def _export_end_stale(job: ExportJob, reason: str) -> None:
    job.status, job.error, job.finished_at = ExportJob.Status.FAILED, f"{reason}; start the export again", timezone.now()
    job.save(update_fields=["status", "error", "finished_at"])


EXPORT_JOB = JobKind(name=EXPORT_JOB_NAME, model=ExportJob, running=RUNNING, end=_export_end_stale,
                     cleanup=_export_files_drop)
