"""Researcher page with the quality figures of ``annotations.quality``, and its plots as PNG."""
from __future__ import annotations

import io
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from . import quality, roles, selectors

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(**kwargs) -> Figure:
    # Imported on first plot: matplotlib costs every web process memory that only this page needs.
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _report_for(request: HttpRequest) -> quality.QualityReport:
    if not roles.is_researcher(request.user):
        raise PermissionDenied("the quality page is for researchers")
    return quality.quality_report(selectors.judgement_rows_for_quality())


@login_required
def quality_page(request: HttpRequest) -> HttpResponse:
    """Quality figures; annotators below the gold threshold (left out of reward-model training) are flagged."""
    report = _report_for(request)
    names = selectors.annotator_names(a.annotator_id for a in report.annotators)
    threshold = settings.REWARD_MIN_GOLD_ACCURACY
    annotators = [{"q": a, "name": names.get(a.annotator_id, str(a.annotator_id)),
                   "below_threshold": a.gold_accuracy is not None and a.gold_accuracy < threshold}
                  for a in report.annotators]
    return render(request, "annotations/quality.html", {
        "report": report, "annotators": annotators, "gold_threshold": threshold,
        "n_below_threshold": sum(row["below_threshold"] for row in annotators),
        "skips": selectors.skip_reason_counts(),
    })


def _sources_figure(report: quality.QualityReport) -> Figure:
    sources = list(reversed(report.sources))  # best at the top
    fig = _figure(figsize=(7, 0.5 * len(sources) + 1.5))
    ax = fig.add_subplot()
    y = range(len(sources))
    scores = [s.score for s in sources]
    errors = [[s.score - s.ci_low for s in sources], [s.ci_high - s.score for s in sources]]
    ax.errorbar(scores, list(y), xerr=errors, fmt="o", capsize=4)
    ax.set_yticks(list(y), [s.source for s in sources])
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("Bradley-Terry score (log-odds, mean 0) with 95 % interval")
    fig.tight_layout()
    return fig


def _annotators_figure(report: quality.QualityReport, names: dict[int, str]) -> Figure:
    rows = report.annotators
    fig = _figure(figsize=(7, 0.45 * len(rows) + 1.8))
    ax = fig.add_subplot()
    y = list(range(len(rows)))
    gold = [a.gold_accuracy if a.gold_accuracy is not None else float("nan") for a in rows]
    left = [a.left_share if a.left_share is not None else float("nan") for a in rows]
    ax.barh([v - 0.2 for v in y], gold, height=0.4, label="gold accuracy")
    ax.barh([v + 0.2 for v in y], left, height=0.4, label="share chosen on the left")
    ax.axvline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.axvline(settings.REWARD_MIN_GOLD_ACCURACY, color="#b00020", linewidth=0.8, label="gold threshold")
    ax.set_yticks(y, [names.get(a.annotator_id, str(a.annotator_id)) for a in rows])
    ax.set_xlim(0, 1.05)  # a share of 1.0 stays inside the frame
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


@login_required
def quality_plot(request: HttpRequest, plot: str) -> HttpResponse:
    report = _report_for(request)
    if plot == "sources":
        fig = _sources_figure(report)
    elif plot == "annotators":
        names = selectors.annotator_names(a.annotator_id for a in report.annotators)
        fig = _annotators_figure(report, names)
    else:
        raise Http404(f"no quality plot named {plot!r}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return HttpResponse(buffer.getvalue(), content_type="image/png")
