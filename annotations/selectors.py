"""Read-side queries over judgements: export filters, rows for quality control.

Views, the admin, the export command and the export task read judgements only
through these functions, so a filter means the same thing everywhere.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from . import quality
from .converters import MAX_ID
from .errors import AnnotationError
from .models import Assignment, Judgement

MAX_USER_ID = 2**31 - 1  # django.contrib.auth's users have a 32-bit AutoField
# Dates a client may filter on: every judgement falls inside, and a bound one day past either end still
# fits a datetime in any time zone (9999-12-31 plus a day, or minus an offset, used to overflow: a 500).
EARLIEST_DATE = dt.date(1900, 1, 1)
LATEST_DATE = dt.date(2999, 12, 31)


class ExportFilterError(AnnotationError, ValueError):
    """An export filter could not be parsed; the message names the filter and the reason."""

    code = "invalid_export_filter"


@dataclass(frozen=True)
class ExportFilters:
    """Which judgements an export contains.  Every field left at its default filters nothing.

    created_from / created_before
        ``created_at >= created_from`` and ``created_at < created_before``
        (aware datetimes).  When parsed from a plain date, ``date_to`` is
        inclusive: ``date_to=2024-05-01`` keeps that whole day (UTC).
    annotator_ids
        only judgements by these users.
    proposed_by
        only comparisons whose ``Comparison.proposed_by`` is one of these.
    edit_sources
        only comparisons where edit A or edit B has one of these ``Edit.source``.
    min_confidence
        only judgements with ``confidence >= min_confidence``.
    min_gold_accuracy
        drop every judgement of an annotator whose gold accuracy (over all
        their gold judgements, see ``annotations.quality``) is below this;
        annotators without gold judgements are kept, since nothing is known
        against them.  The card lists who was dropped.
    exclude_gold
        drop judgements on gold comparisons.
    judgement_ids
        only these judgements (the admin's "export selected").
    """

    created_from: dt.datetime | None = None
    created_before: dt.datetime | None = None
    annotator_ids: tuple[int, ...] = ()
    proposed_by: tuple[str, ...] = ()
    edit_sources: tuple[str, ...] = ()
    min_confidence: int | None = None
    min_gold_accuracy: float | None = None
    exclude_gold: bool = False
    judgement_ids: tuple[int, ...] = field(default=(), repr=False)

    FIELDS = (
        "date_from", "date_to", "annotators", "proposed_by", "edit_sources",
        "min_confidence", "min_gold_accuracy", "exclude_gold", "judgement_ids",
    )

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> ExportFilters:
        """Filters from query parameters, JSON or command options.

        Keys are ``FIELDS``; list values may be lists or comma-separated
        strings; ``date_from`` / ``date_to`` take ISO dates or datetimes.
        Unknown keys and empty values are refused, not ignored.
        """
        unknown = set(data) - set(cls.FIELDS)
        if unknown:
            raise ExportFilterError(f"unknown export filter(s) {sorted(unknown)}; known: {', '.join(cls.FIELDS)}")
        return cls(
            created_from=_parse_bound(data.get("date_from"), "date_from", end=False),
            created_before=_parse_bound(data.get("date_to"), "date_to", end=True),
            annotator_ids=tuple(_parse_int(v, "annotators", high=MAX_USER_ID)
                                for v in _parse_list(data.get("annotators"))),
            proposed_by=tuple(_parse_list(data.get("proposed_by"))),
            edit_sources=tuple(_parse_list(data.get("edit_sources"))),
            min_confidence=_parse_confidence(data.get("min_confidence")),
            min_gold_accuracy=_parse_accuracy(data.get("min_gold_accuracy")),
            exclude_gold=_parse_bool(data.get("exclude_gold"), "exclude_gold"),
            judgement_ids=tuple(_parse_int(v, "judgement_ids") for v in _parse_list(data.get("judgement_ids"))),
        )

    def to_json(self) -> dict[str, Any]:
        """The filters as stored on an ExportJob and written into the dataset card (round-trips ``parse``)."""
        out: dict[str, Any] = {}
        if self.created_from is not None:
            out["date_from"] = self.created_from.isoformat()
        if self.created_before is not None:
            out["date_to"] = self.created_before.isoformat()
        for name, value in asdict(self).items():
            if name in ("created_from", "created_before") or value in ((), None, False):
                continue
            out["annotators" if name == "annotator_ids" else name] = list(value) if isinstance(value, tuple) else value
        return out


def _single(value: Any, name: str) -> Any:
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ExportFilterError(f"filter {name}: expected one value, got {len(value)}")
        return value[0]
    return value


def _parse_list(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    out: list[str] = []
    for item in items:
        out.extend(part.strip() for part in str(item).split(",") if part.strip())
    return out


def _parse_int(value: Any, name: str, *, high: int = MAX_ID) -> int:
    """A whole number in 1..``high`` (the id column's range): beyond it a filter would overflow the query."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ExportFilterError(f"filter {name}: {value!r} is not an integer id") from None
    if not 1 <= number <= high:
        raise ExportFilterError(f"filter {name}: {number} is outside 1..{high}")
    return number


def _parse_bound(value: Any, name: str, *, end: bool) -> dt.datetime | None:
    value = _single(value, name)
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        text = str(value).strip()
        try:
            # A plain date first: parse_datetime would read it as midnight, and an end date keeps its whole day.
            day = parse_date(text)
            parsed = None if day is not None else parse_datetime(text)
        except ValueError:  # well-formed but impossible (month 13, hour 25, an offset of a day)
            raise ExportFilterError(f"filter {name}: {text!r} is not a valid date or datetime") from None
        if day is not None:
            _check_date_range(day, name)
            parsed = dt.datetime.combine(day + dt.timedelta(days=1) if end else day, dt.time.min)
        elif parsed is None:
            raise ExportFilterError(f"filter {name}: {text!r} is not an ISO date or datetime")
        else:
            _check_date_range(parsed.date(), name)  # before any conversion to UTC, which is what overflowed
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, dt.timezone.utc)
    return parsed


def _check_date_range(day: dt.date, name: str) -> None:
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        raise ExportFilterError(f"filter {name}: {day.isoformat()} is outside {EARLIEST_DATE}..{LATEST_DATE}")


def _parse_confidence(value: Any) -> int | None:
    value = _single(value, "min_confidence")
    if value in (None, ""):
        return None
    number = _parse_int(value, "min_confidence")
    if not 1 <= number <= 5:
        raise ExportFilterError(f"filter min_confidence: {number} is outside 1..5")
    return number


def _parse_accuracy(value: Any) -> float | None:
    value = _single(value, "min_gold_accuracy")
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ExportFilterError(f"filter min_gold_accuracy: {value!r} is not a number") from None
    if not 0.0 <= number <= 1.0:
        raise ExportFilterError(f"filter min_gold_accuracy: {number} is outside 0..1")
    return number


def _parse_bool(value: Any, name: str) -> bool:
    value = _single(value, name)
    if value in (None, ""):
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ExportFilterError(f"filter {name}: {value!r} is not true or false")


def judgement_rows_for_quality(queryset: QuerySet[Judgement] | None = None) -> list[quality.JudgementRow]:
    """Judgements as ``quality.JudgementRow`` (all of them unless ``queryset`` narrows them)."""
    qs = Judgement.objects.all() if queryset is None else queryset
    values = qs.order_by().values_list(
        "annotator_id", "comparison_id", "comparison__track_id", "comparison__edit_a_id", "comparison__edit_b_id",
        "comparison__edit_a__source", "comparison__edit_b__source", "choice", "left_edit_id", "decision_seconds",
        "comparison__is_gold", "comparison__gold_answer", "comparison__repeat_of_id",
        "comparison__is_hidden_reference", "confidence",
    )
    return [
        quality.JudgementRow(
            annotator_id=a, comparison_id=c, track_id=t, edit_a_id=ea, edit_b_id=eb, source_a=sa, source_b=sb,
            choice=ch, left_edit_id=left, decision_seconds=sec, is_gold=gold, gold_answer=answer, repeat_of_id=rep,
            is_hidden_reference=hidden, confidence=confidence,
        )
        for a, c, t, ea, eb, sa, sb, ch, left, sec, gold, answer, rep, hidden, confidence
        in values.iterator(chunk_size=5000)
    ]


def annotator_gold_accuracy() -> dict[int, tuple[int, int]]:
    """(correct, total) gold judgements per annotator, over all their gold judgements."""
    gold_rows = judgement_rows_for_quality(Judgement.objects.filter(comparison__is_gold=True))
    return quality.gold_accuracy_by_annotator(gold_rows)


def annotators_below_gold_accuracy(threshold: float) -> tuple[int, ...]:
    """Ids of annotators whose measured gold accuracy is below ``threshold``, sorted."""
    return tuple(
        sorted(a for a, (correct, total) in annotator_gold_accuracy().items() if correct / total < threshold)
    )


def judgements_for_export(filters: ExportFilters) -> tuple[QuerySet[Judgement], tuple[int, ...]]:
    """Judgements matching ``filters`` in id order, and the annotators dropped for low gold accuracy."""
    qs = Judgement.objects.all()
    if filters.created_from is not None:
        qs = qs.filter(created_at__gte=filters.created_from)
    if filters.created_before is not None:
        qs = qs.filter(created_at__lt=filters.created_before)
    if filters.annotator_ids:
        qs = qs.filter(annotator_id__in=filters.annotator_ids)
    if filters.proposed_by:
        qs = qs.filter(comparison__proposed_by__in=filters.proposed_by)
    if filters.edit_sources:
        qs = qs.filter(
            Q(comparison__edit_a__source__in=filters.edit_sources)
            | Q(comparison__edit_b__source__in=filters.edit_sources)
        )
    if filters.min_confidence is not None:
        qs = qs.filter(confidence__gte=filters.min_confidence)
    if filters.exclude_gold:
        qs = qs.filter(comparison__is_gold=False)
    if filters.judgement_ids:
        qs = qs.filter(id__in=filters.judgement_ids)
    dropped: tuple[int, ...] = ()
    if filters.min_gold_accuracy is not None:
        dropped = annotators_below_gold_accuracy(filters.min_gold_accuracy)
        if dropped:
            qs = qs.exclude(annotator_id__in=dropped)
    return qs.order_by("id"), dropped


@dataclass(frozen=True)
class SkipReasonCount:
    """How often annotators skipped for one preset reason."""

    choice: str
    label: str
    n_skips: int


def skip_reason_counts() -> tuple[SkipReasonCount, ...]:
    """Skips per preset reason, every preset listed (zero included), then skips made before presets existed.

    Many "broken audio" skips point at the renderer; many "identical" ones at
    pairs not worth asking about; many "cannot decide" at a hard or unclear task.
    """
    counts = dict(
        Assignment.objects.exclude(skipped_reason="").values_list("skip_reason_choice")
        .annotate(n=Count("pk")).order_by().values_list("skip_reason_choice", "n")
    )
    rows = [SkipReasonCount(choice=value, label=label, n_skips=counts.get(value, 0))
            for value, label in Assignment.SkipReason.choices]
    if counts.get(""):
        rows.append(SkipReasonCount(choice="", label="Free text (before presets)", n_skips=counts[""]))
    return tuple(rows)


def annotator_names(ids: Iterable[int]) -> dict[int, str]:
    """Usernames by user id, for tables that show annotators."""
    from django.contrib.auth import get_user_model

    return dict(get_user_model().objects.filter(id__in=list(ids)).values_list("id", "username"))
