"""Researcher pages and API of the retrain cycle: start one, watch it, compare and (de)activate versions.

Views only parse input, call one service of ``rlhf.cycle.state`` / ``rlhf.versions`` (or a
reader of ``rlhf.selectors``) and render; every page and endpoint is researchers-only, checked
before any lookup.  Refusals of those services (``DomainError``) become 4xx answers in
``feedback_site.errors``, for pages and the API alike.  None of these modules imports torch,
stable-baselines3 or gymnasium (``tests/test_web_process_imports.py``).
"""
from __future__ import annotations

import io
import math
from dataclasses import fields as dataclass_fields
from types import SimpleNamespace

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from annotations.quality import source_scores
from annotations.roles import IsResearcher, researcher_required
from annotations.selectors import judgement_rows_for_quality
from annotations.errors import DomainError
from annotations.jobs import job_refresh
from annotations.models import Comparison
from editing.baselines import BAR_CUT, BASELINE_EDIT_SOURCES, HEURISTIC, RANDOM
from rlhf.cycle.parameters import CycleParameters
from rlhf.cycle.state import cycle_start, cycle_status
from rlhf.models import Cycle, PolicyVersion, RewardModelVersion
from rlhf.selectors import cycle_comparisons_label, cycle_preflight, cycle_report
from rlhf.versions import policy_activate, policy_rollback, reward_model_activate, reward_model_rollback

_BOUNDS = CycleParameters.BOUNDS

PLOTS = {
    "reward-model-accuracy": "Reward-model validation accuracy per version",
    "policy-reward": "Policy: mean learned and dense reward per version",
    "human-score": "Bradley-Terry score of each policy version from judgements",
}


def _human_scores() -> dict[str, object]:
    """``annotations.quality.source_scores`` keyed by edit source."""
    return {s.source: s for s in source_scores(judgement_rows_for_quality())}


# --------------------------------------------------------------------------- pages

def _research_page(request: HttpRequest, *, refusal: str = "", status_code: int = 200,
                   given: dict[str, str] | None = None) -> HttpResponse:
    """The research page; ``given`` is a refused start's form input, shown again as typed."""
    given = given or {}
    scores = _human_scores()
    policies = [(p, scores.get(p.source)) for p in PolicyVersion.objects.select_related("reward_model", "parent")[:50]]
    empty = _plot_empty_reasons(scores)
    return render(request, "rlhf/research.html", {
        "cycles": Cycle.objects.select_related("reward_model_version", "policy_version")[:30],
        "running": Cycle.objects.filter(is_running=True).first(),
        # (name, default, the value typed in a refused start, its allowed values or ()) per field of the start form
        "parameters": [(name, default, given.get(name, ""), CycleParameters.CHOICES.get(name, ()))
                       for name, default in CycleParameters.defaults().to_json().items()],
        "parameters_given": bool(given),
        "preflight": cycle_preflight(),
        "refusal": refusal,
        "policies": policies,
        "reward_models": RewardModelVersion.objects.select_related("parent")[:50],
        "plots": [(name, title, empty[name]) for name, title in PLOTS.items()],
    }, status=status_code)


@researcher_required
@require_GET
def research_home(request: HttpRequest) -> HttpResponse:
    """Cycles, the start form with what a cycle would use, both version lists, and the plots across cycles."""
    return _research_page(request)


@researcher_required
@require_POST
def cycle_start_view(request: HttpRequest) -> HttpResponse:
    """Start a cycle with the posted parameters (blank fields keep the defaults).

    A refusal is shown on the research page, next to the start button, with its status code,
    and the form keeps what was typed.
    """
    names = CycleParameters().to_json()
    given = {k: v for k, v in request.POST.items() if k in names and v.strip() != ""}
    wait = _cycle_start_wait(request)
    if wait is not None:
        response = _research_page(request, refusal=f"too many cycle starts; try again in {wait} seconds",
                                  status_code=429, given=given)
        response["Retry-After"] = str(wait)
        return response
    try:
        cycle = cycle_start(parameters=CycleParameters.from_json(given), requested_by=request.user)
    except DomainError as err:
        return _research_page(request, refusal=str(err), status_code=err.status_code, given=given)
    return redirect("rlhf:cycle-detail", pk=cycle.pk)


def _cycle_start_wait(request: HttpRequest) -> int | None:
    """Seconds to wait when the page's start form is over the API's ``cycle_start`` rate (the same
    DRF throttle and count), None when it may start now."""
    throttle = ScopedRateThrottle()
    if throttle.allow_request(request, SimpleNamespace(throttle_scope="cycle_start")):
        return None
    return max(1, math.ceil(throttle.wait() or 1))


@researcher_required
@require_GET
def cycle_detail(request: HttpRequest, pk: int) -> HttpResponse:
    cycle = get_object_or_404(Cycle.objects.select_related("reward_model_version", "policy_version__parent"), pk=pk)
    return render(request, "rlhf/cycle.html", {"cycle": cycle, "initial": cycle_status(cycle),
                                               "report": cycle_report(cycle)})


@researcher_required
@require_GET
def cycle_comparisons(request: HttpRequest, pk: int) -> HttpResponse:
    """The comparisons a cycle created, with the answers they have so far."""
    cycle = get_object_or_404(Cycle, pk=pk)
    comparisons = (Comparison.objects.filter(proposed_by=cycle_comparisons_label(cycle))
                   .select_related("track", "edit_a", "edit_b").prefetch_related("judgements")
                   .order_by("-priority", "pk"))
    rows = []
    for c in comparisons:
        answers = {"a": 0, "b": 0, "tie": 0}
        for judgement in c.judgements.all():
            answers[judgement.choice] += 1
        rows.append((c, answers, sum(answers.values())))
    return render(request, "rlhf/cycle_comparisons.html", {"cycle": cycle, "rows": rows})


@researcher_required
@require_GET
def cycle_status_json(request: HttpRequest, pk: int) -> JsonResponse:
    """What the live page polls."""
    return JsonResponse(cycle_status(job_refresh(get_object_or_404(Cycle, pk=pk))))


def _version_action(request: HttpRequest, action, success: str) -> HttpResponse:
    version = action()
    messages.success(request, success.format(label=version.label))
    return redirect("rlhf:home")


@researcher_required
@require_POST
def policy_activate_view(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(PolicyVersion, pk=pk)
    return _version_action(request, lambda: policy_activate(version=version), "policy {label} is now active")


@researcher_required
@require_POST
def policy_rollback_view(request: HttpRequest) -> HttpResponse:
    return _version_action(request, policy_rollback, "rolled back: policy {label} is active")


@researcher_required
@require_POST
def reward_model_activate_view(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(RewardModelVersion, pk=pk)
    return _version_action(request, lambda: reward_model_activate(version=version), "{label} is now the active reward model")


@researcher_required
@require_POST
def reward_model_rollback_view(request: HttpRequest) -> HttpResponse:
    return _version_action(request, reward_model_rollback, "rolled back: {label} is the active reward model")


# --------------------------------------------------------------------------- plots

def _plot_empty_reasons(scores: dict[str, object]) -> dict[str, str]:
    """Per plot, the sentence shown instead of it while it has nothing to draw ("" when it has)."""
    policies = list(PolicyVersion.objects.order_by("pk"))
    return {
        "reward-model-accuracy": "" if RewardModelVersion.objects.exists() else "No reward model yet: finish a cycle.",
        "policy-reward": "" if policies else "No policy version yet: finish a cycle.",
        "human-score": "" if any(p.source in scores for p in policies) else
        "No judgement compares a policy version's edits with another source yet.",
    }


@researcher_required
@require_GET
def cycle_plot(request: HttpRequest, name: str) -> HttpResponse:
    """A PNG across versions: reward-model accuracy, policy rewards, or human scores of policies.

    Shares keep headroom above 1.0 so nothing sits on the frame, and learned rewards of
    different versions are separate markers: each is normalised by its own reward model.
    """
    if name not in PLOTS:
        raise Http404(f"no plot named {name!r}")
    # Agg: no display on servers; imported here so pages that never plot don't pay for matplotlib.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=100)
    ax = fig.add_subplot()
    scores = _human_scores()
    empty = _plot_empty_reasons(scores)[name]
    if empty:
        ax.axis("off")
        ax.text(0.5, 0.5, empty, ha="center", va="center", wrap=True, transform=ax.transAxes)
    elif name == "reward-model-accuracy":
        versions = list(RewardModelVersion.objects.order_by("pk"))
        x = [v.label for v in versions]
        ax.plot(x, [v.metrics.get("baseline_accuracy") for v in versions], marker="s", linestyle="--", color="grey",
                markerfacecolor="none", markersize=9, label="dense reward only")
        ax.plot(x, [v.metrics.get("accuracy") for v in versions], marker="o", zorder=3, label="reward model")
        ax.set_ylabel("validation accuracy")
        ax.set_ylim(0, 1.08)
        ax.axhline(0.5, color="grey", linewidth=0.6, linestyle=":")
    elif name == "policy-reward":
        versions = list(PolicyVersion.objects.order_by("pk"))
        x = [v.label for v in versions]
        ax.plot(x, [v.metrics.get("mean_dense_reward") for v in versions], marker="s", label="dense (one scale)")
        ax.plot(x, [v.metrics.get("mean_learned_reward") for v in versions], marker="o", linestyle="none",
                label="learned (each by its own reward model: not comparable across versions)")
        ax.set_ylabel("mean reward, last updates")
        ax.margins(y=0.15)
    else:
        versions = [v for v in PolicyVersion.objects.order_by("pk") if v.source in scores]
        x = [v.label for v in versions]
        y = [scores[v.source].score for v in versions]
        err = [[scores[v.source].score - scores[v.source].ci_low for v in versions],
               [scores[v.source].ci_high - scores[v.source].score for v in versions]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, linestyle="none", label="policy version (95 % interval)")
        for baseline in (BASELINE_EDIT_SOURCES[RANDOM], BASELINE_EDIT_SOURCES[BAR_CUT], BASELINE_EDIT_SOURCES[HEURISTIC]):
            if baseline in scores:
                ax.axhline(scores[baseline].score, linestyle=":", color="grey")
                ax.annotate(baseline, (0, scores[baseline].score), fontsize="x-small", color="grey")
        ax.set_ylabel("Bradley-Terry score (log-odds)")
        ax.margins(y=0.15)
    if not empty:
        ax.set_xlabel("version")
        ax.legend(fontsize="x-small")
    ax.set_title(PLOTS[name], fontsize="medium")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return HttpResponse(buf.getvalue(), content_type="image/png")


# --------------------------------------------------------------------------- API

class CycleStatusSerializer(serializers.Serializer):
    """The shape of ``rlhf.cycle.state.cycle_status`` (documentation for the OpenAPI schema)."""

    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Cycle.Status.choices)
    status_display = serializers.CharField()
    is_running = serializers.BooleanField()
    progress = serializers.FloatField(help_text="0 to 1")
    log = serializers.CharField()
    error = serializers.CharField()
    parameters = serializers.DictField()
    metrics = serializers.DictField()
    trigger = serializers.CharField()
    reward_model_version = serializers.CharField(allow_null=True)
    policy_version = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


def _parameters_serializer() -> type[serializers.Serializer]:
    """``rlhf.cycle.parameters.CycleParameters`` as optional overrides, field by field with its bounds.

    Built from the dataclass (its one home), so a new parameter reaches the API and its schema
    without being written again here; the research page's form iterates the same fields.
    """
    defaults = CycleParameters()
    declared: dict[str, serializers.Field] = {}
    for field in dataclass_fields(CycleParameters):
        low, high = _BOUNDS.get(field.name, (None, None))
        default = getattr(defaults, field.name)
        if field.name in CycleParameters.CHOICES:
            declared[field.name] = serializers.ChoiceField(choices=CycleParameters.CHOICES[field.name], required=False)
        elif isinstance(default, bool):
            declared[field.name] = serializers.BooleanField(required=False)
        elif isinstance(default, int):
            declared[field.name] = serializers.IntegerField(required=False, min_value=low, max_value=high)
        else:
            declared[field.name] = serializers.FloatField(required=False, min_value=low, max_value=high)
    return type("CycleParametersSerializer", (serializers.Serializer,), {
        "__doc__": "Optional overrides of ``rlhf.cycle.parameters.CycleParameters`` (documentation for the OpenAPI schema).",
        "__module__": __name__, **declared})


CycleParametersSerializer = _parameters_serializer()


class CycleListApi(APIView):
    """GET: recent cycles.  POST: start a cycle; the body holds ``CycleParameters`` fields (all optional)."""

    permission_classes = [permissions.IsAuthenticated, IsResearcher]

    @property
    def throttle_scope(self) -> str | None:
        # Starting is throttled (rate in settings); watching is not.
        return "cycle_start" if self.request.method == "POST" else None

    @extend_schema(operation_id="rlhf_cycles_list", responses={200: CycleStatusSerializer(many=True)},
                   summary="The 50 most recent cycles")
    def get(self, request):
        return Response([cycle_status(c) for c in Cycle.objects.select_related(
            "reward_model_version", "policy_version")[:50]])

    @extend_schema(request=CycleParametersSerializer, responses={201: CycleStatusSerializer},
                   summary="Start a retrain cycle (409 while another one runs)")
    def post(self, request):
        if not isinstance(request.data, dict):
            return Response({"detail": f"the body must be a JSON object of cycle parameters, "
                                       f"not a {type(request.data).__name__}", "code": "invalid_parameters"},
                            status=status.HTTP_400_BAD_REQUEST)
        cycle = cycle_start(parameters=CycleParameters.from_json(dict(request.data)), requested_by=request.user)
        return Response(cycle_status(cycle), status=status.HTTP_201_CREATED)


class CyclePreflightSerializer(serializers.Serializer):
    """``rlhf.selectors.CyclePreflight``: what a cycle started now would use, and why it would be refused."""

    ready = serializers.BooleanField()
    refusals = serializers.ListField(child=serializers.CharField())
    n_judgements = serializers.IntegerField()
    n_new_judgements = serializers.IntegerField()
    n_pairs = serializers.IntegerField()
    n_tracks = serializers.IntegerField()
    n_tracks_ingested = serializers.IntegerField()
    n_dropped_annotators = serializers.IntegerField()
    last_cycle_id = serializers.IntegerField(allow_null=True)
    min_pairs = serializers.IntegerField()
    min_new_judgements = serializers.IntegerField()


class CyclePreflightApi(APIView):
    """GET: the check a start goes through (``POST /api/rlhf/cycles/`` answers 409 while ``ready`` is false)."""

    permission_classes = [permissions.IsAuthenticated, IsResearcher]

    @extend_schema(responses={200: CyclePreflightSerializer}, summary="What a cycle started now would use")
    def get(self, request):
        return Response(CyclePreflightSerializer(cycle_preflight()).data)


class CycleDetailApi(APIView):
    permission_classes = [permissions.IsAuthenticated, IsResearcher]

    @extend_schema(responses={200: CycleStatusSerializer}, summary="A cycle: status, progress, log, metrics")
    def get(self, request, pk: int):
        return Response(cycle_status(job_refresh(get_object_or_404(Cycle, pk=pk))))
