"""Researcher pages and API of the retrain cycle: start one, watch it, compare and (de)activate versions.

Views only parse input, call one service of ``rlhf.cycle`` / ``rlhf.versions`` and
render; every page and endpoint is researchers-only.  Both modules are free of
torch and stable-baselines3, so the site's processes never load them.
"""
from __future__ import annotations

import io

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.quality import source_scores
from annotations.roles import is_researcher
from annotations.selectors import judgement_rows_for_quality
from rlhf.cycle import CycleBusy, CycleError, CycleParameters, cycle_start, cycle_status
from rlhf.models import Cycle, PolicyVersion, RewardModelVersion
from rlhf.versions import (
    PolicyServiceError,
    RewardServiceError,
    policy_activate,
    policy_rollback,
    reward_model_activate,
    reward_model_rollback,
)

PLOTS = {
    "reward-model-accuracy": "Reward-model validation accuracy per version",
    "policy-reward": "Policy: mean learned and dense reward per version",
    "human-score": "Human Bradley-Terry score of each policy version",
}


def _require_researcher(request: HttpRequest) -> None:
    if not is_researcher(request.user):
        raise PermissionDenied("researchers only")


def _human_scores() -> dict[str, object]:
    """``annotations.quality.source_scores`` keyed by edit source."""
    return {s.source: s for s in source_scores(judgement_rows_for_quality())}


# --------------------------------------------------------------------------- pages

@login_required
@require_GET
def research_home(request: HttpRequest) -> HttpResponse:
    """Cycles, the start form, both version lists with metrics, and the plots across cycles."""
    _require_researcher(request)
    scores = _human_scores()
    policies = [(p, scores.get(p.source)) for p in PolicyVersion.objects.select_related("reward_model", "parent")[:50]]
    return render(request, "rlhf/research.html", {
        "cycles": Cycle.objects.select_related("reward_model_version", "policy_version")[:30],
        "running": Cycle.objects.filter(is_running=True).first(),
        "defaults": CycleParameters.defaults().to_json(),
        "policies": policies,
        "reward_models": RewardModelVersion.objects.select_related("parent")[:50],
        "plots": PLOTS,
    })


@login_required
@require_POST
def cycle_start_view(request: HttpRequest) -> HttpResponse:
    """Start a cycle with the posted parameters (blank fields keep the defaults)."""
    _require_researcher(request)
    names = CycleParameters().to_json()
    given = {k: v for k, v in request.POST.items() if k in names and v.strip() != ""}
    try:
        cycle = cycle_start(parameters=CycleParameters.from_json(given), requested_by=request.user)
    except CycleBusy as err:
        return _refused(status_code=409, message=str(err), request=request)
    except CycleError as err:
        return _refused(status_code=400, message=str(err), request=request)
    return redirect("rlhf:cycle-detail", pk=cycle.pk)


def _refused(*, status_code: int, message: str, request: HttpRequest) -> HttpResponse:
    """The refusal as a page with its status code (a redirect would hide the refusal from scripts)."""
    return render(request, "rlhf/refused.html", {"message": message}, status=status_code)


@login_required
@require_GET
def cycle_detail(request: HttpRequest, pk: int) -> HttpResponse:
    _require_researcher(request)
    cycle = get_object_or_404(Cycle, pk=pk)
    return render(request, "rlhf/cycle.html", {"cycle": cycle, "initial": cycle_status(cycle)})


@login_required
@require_GET
def cycle_status_json(request: HttpRequest, pk: int) -> JsonResponse:
    """What the live page polls."""
    _require_researcher(request)
    return JsonResponse(cycle_status(get_object_or_404(Cycle, pk=pk)))


def _version_action(request: HttpRequest, action, success: str) -> HttpResponse:
    _require_researcher(request)
    try:
        version = action()
    except (PolicyServiceError, RewardServiceError) as err:
        return _refused(status_code=409, message=str(err), request=request)
    messages.success(request, success.format(label=version.label))
    return redirect("rlhf:home")


@login_required
@require_POST
def policy_activate_view(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(PolicyVersion, pk=pk)
    return _version_action(request, lambda: policy_activate(version=version), "policy {label} is now active")


@login_required
@require_POST
def policy_rollback_view(request: HttpRequest) -> HttpResponse:
    return _version_action(request, policy_rollback, "rolled back: policy {label} is active")


@login_required
@require_POST
def reward_model_activate_view(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(RewardModelVersion, pk=pk)
    return _version_action(request, lambda: reward_model_activate(version=version), "{label} is now the active reward model")


@login_required
@require_POST
def reward_model_rollback_view(request: HttpRequest) -> HttpResponse:
    return _version_action(request, reward_model_rollback, "rolled back: {label} is the active reward model")


# --------------------------------------------------------------------------- plots

@login_required
@require_GET
def cycle_plot(request: HttpRequest, name: str) -> HttpResponse:
    """A PNG across versions: reward-model accuracy, policy rewards, or human scores of policies."""
    _require_researcher(request)
    if name not in PLOTS:
        raise Http404(f"no plot named {name!r}")
    # Agg: no display on servers; imported here so pages that never plot don't pay for matplotlib.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=100)
    ax = fig.add_subplot()
    if name == "reward-model-accuracy":
        versions = list(RewardModelVersion.objects.order_by("pk"))
        x = [v.label for v in versions]
        ax.plot(x, [v.metrics.get("accuracy") for v in versions], marker="o", label="reward model")
        ax.plot(x, [v.metrics.get("baseline_accuracy") for v in versions], marker="s", linestyle="--",
                label="dense reward only")
        ax.set_ylabel("validation accuracy")
        ax.set_ylim(0, 1)
    elif name == "policy-reward":
        versions = list(PolicyVersion.objects.order_by("pk"))
        x = [v.label for v in versions]
        ax.plot(x, [v.metrics.get("mean_learned_reward") for v in versions], marker="o",
                label="learned (normalised by its reward model)")
        ax.plot(x, [v.metrics.get("mean_dense_reward") for v in versions], marker="s", label="dense")
        ax.set_ylabel("mean reward, last updates")
    else:
        scores = _human_scores()
        versions = [v for v in PolicyVersion.objects.order_by("pk") if v.source in scores]
        x = [v.label for v in versions]
        y = [scores[v.source].score for v in versions]
        err = [[scores[v.source].score - scores[v.source].ci_low for v in versions],
               [scores[v.source].ci_high - scores[v.source].score for v in versions]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label="policy version (95 % interval)")
        for baseline in ("baseline:random", "baseline:bar_cut"):
            if baseline in scores:
                ax.axhline(scores[baseline].score, linestyle=":", color="grey")
                ax.annotate(baseline, (0, scores[baseline].score), fontsize="x-small", color="grey")
        ax.set_ylabel("Bradley-Terry score (log-odds)")
    ax.set_xlabel("version")
    ax.set_title(PLOTS[name], fontsize="medium")
    if ax.lines:
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return HttpResponse(buf.getvalue(), content_type="image/png")


# --------------------------------------------------------------------------- API

class IsResearcher(permissions.BasePermission):
    message = "researchers only"

    def has_permission(self, request, view) -> bool:
        return is_researcher(request.user)


class CycleStatusSerializer(serializers.Serializer):
    """The shape of ``rlhf.cycle.cycle_status`` (documentation for the OpenAPI schema)."""

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


class CycleParametersSerializer(serializers.Serializer):
    """Optional overrides of ``rlhf.cycle.CycleParameters`` (documentation for the OpenAPI schema)."""

    ppo_timesteps = serializers.IntegerField(required=False)
    learned_weight = serializers.FloatField(required=False)
    n_excerpts = serializers.IntegerField(required=False)
    n_pairs = serializers.IntegerField(required=False)
    random_share = serializers.FloatField(required=False)
    policy_samples = serializers.IntegerField(required=False)
    rm_max_epochs = serializers.IntegerField(required=False)
    rm_members = serializers.IntegerField(required=False)
    rm_warm_start = serializers.BooleanField(required=False)
    required_judgements = serializers.IntegerField(required=False)
    seed = serializers.IntegerField(required=False)


class CycleListApi(APIView):
    """GET: recent cycles.  POST: start a cycle; the body holds ``CycleParameters`` fields (all optional)."""

    permission_classes = [permissions.IsAuthenticated, IsResearcher]

    @extend_schema(operation_id="rlhf_cycles_list", responses={200: CycleStatusSerializer(many=True)},
                   summary="The 50 most recent cycles")
    def get(self, request):
        return Response([cycle_status(c) for c in Cycle.objects.select_related(
            "reward_model_version", "policy_version")[:50]])

    @extend_schema(request=CycleParametersSerializer, responses={201: CycleStatusSerializer},
                   summary="Start a retrain cycle (409 while another one runs)")
    def post(self, request):
        data = request.data if isinstance(request.data, dict) else {}
        try:
            cycle = cycle_start(parameters=CycleParameters.from_json(dict(data)), requested_by=request.user)
        except CycleBusy as err:
            return Response({"detail": str(err), "code": "cycle_running"}, status=status.HTTP_409_CONFLICT)
        except CycleError as err:
            return Response({"detail": str(err), "code": "invalid_parameters"}, status=status.HTTP_400_BAD_REQUEST)
        return Response(cycle_status(cycle), status=status.HTTP_201_CREATED)


class CycleDetailApi(APIView):
    permission_classes = [permissions.IsAuthenticated, IsResearcher]

    @extend_schema(responses={200: CycleStatusSerializer}, summary="A cycle: status, progress, log, metrics")
    def get(self, request, pk: int):
        return Response(cycle_status(get_object_or_404(Cycle, pk=pk)))
