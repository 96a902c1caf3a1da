"""Who may open what: every URL of the site (the URLconf walked, not a hand list) x the four roles.

``MATRIX`` holds the expected status of GET (and of POST where a view accepts
it) for anonymous visitors, annotators, researchers and admins.  A URL added to
the site without an entry here fails :func:`test_every_url_has_an_entry`.
The admin's generic model pages (changelist, add, change, ...) follow one rule
for every registered model; anything else under ``admin/`` needs its own entry.

Ids in URLs point at existing rows.  For roles that are refused, the same URL
with an id that does not exist must answer the same: permission checks come
before lookups, so ids cannot be probed.
"""
from __future__ import annotations

import re

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from annotations.models import ExportJob, ListeningCopy, Passage, TrackUpload
from editing.spaces import spaces_spec
from rlhf.models import Cycle, PolicyVersion, RetargetJob, RewardModelVersion, SeamModelVersion
from tests.annotations.factories import make_comparison, make_judgement, make_user

pytestmark = pytest.mark.django_db
ROLES = ("anonymous", "annotator", "researcher", "admin")
MISSING_ID = "987654"

# route -> {method: (anonymous, annotator, researcher, admin)}
LOGIN, FORBIDDEN, NOT_FOUND, NOT_ALLOWED = 302, 403, 404, 405
MATRIX: dict[str, dict[str, tuple[int, int, int, int]]] = {
    # --- the start page and logging in/out
    "": {"get": (LOGIN, 200, 200, 200)},
    "accounts/login/": {"get": (200, 200, 200, 200)},
    "accounts/logout/": {"get": (NOT_ALLOWED,) * 4, "post": (302, 302, 302, 302)},
    # --- the admin's own pages (staff only: everyone else is sent to the admin login)
    "admin/": {"get": (LOGIN, LOGIN, LOGIN, 200)},
    "admin/login/": {"get": (200, 200, 200, 302)},
    "admin/logout/": {"get": (LOGIN, LOGIN, LOGIN, NOT_ALLOWED), "post": (LOGIN, LOGIN, LOGIN, 302)},
    "admin/password_change/": {"get": (LOGIN, LOGIN, LOGIN, 200)},
    "admin/password_change/done/": {"get": (LOGIN, LOGIN, LOGIN, 200)},
    "admin/autocomplete/": {"get": (LOGIN, LOGIN, LOGIN, FORBIDDEN)},  # no model named: refused
    "admin/jsi18n/": {"get": (LOGIN, LOGIN, LOGIN, 200)},
    "admin/r/<content_type_id>/<object_id>/": {"get": (LOGIN, LOGIN, LOGIN, NOT_FOUND)},
    "admin/annotations/track/upload/": {"get": (LOGIN, LOGIN, LOGIN, 200), "post": (LOGIN, LOGIN, LOGIN, 200)},
    "admin/annotations/track/<track_id>/audio/": {"get": (LOGIN, LOGIN, LOGIN, NOT_FOUND)},  # no audio stored
    "admin/auth/user/<id>/password/": {"get": (LOGIN, LOGIN, LOGIN, 200)},
    "admin/^(?P<app_label>auth|django_celery_beat|axes|annotations|rlhf)/$": {"get": (LOGIN, LOGIN, LOGIN, 200)},
    "admin/(?P<url>.*)$": {"get": (LOGIN, LOGIN, LOGIN, NOT_FOUND)},
    # --- annotation pages: the listening page for annotators, audio only for those who may hear it
    "annotate/": {"get": (LOGIN, 200, FORBIDDEN, 200)},
    "annotate/audio/<edit_id>/": {"get": (NOT_FOUND, NOT_FOUND, 200, 200)},  # not assigned to this annotator
    "annotate/original/<comparison_id>/": {"get": (NOT_FOUND, NOT_FOUND, 200, 200)},  # the same rule
    "annotate/quality/": {"get": (LOGIN, FORBIDDEN, 200, 200)},
    "annotate/quality/<plot>.png": {"get": (LOGIN, FORBIDDEN, 200, 200)},
    # --- research pages: researchers (and admins) only
    "research/": {"get": (LOGIN, FORBIDDEN, 200, 200)},
    "research/reward-models/<pk>/loss.png": {"get": (LOGIN, FORBIDDEN, 200, 200)},
    "research/cycles/start/": {"get": (LOGIN, FORBIDDEN, NOT_ALLOWED, NOT_ALLOWED),
                               "post": (LOGIN, FORBIDDEN, 409, 409)},  # one judgement: refused up front
    "research/cycles/<pk>/": {"get": (LOGIN, FORBIDDEN, 200, 200)},
    "research/cycles/<pk>/status.json": {"get": (LOGIN, FORBIDDEN, 200, 200)},
    "research/policies/<pk>/activate/": {"get": (LOGIN, FORBIDDEN, NOT_ALLOWED, NOT_ALLOWED),
                                             "post": (LOGIN, FORBIDDEN, 302, 302)},
    "research/policies/rollback/": {"post": (LOGIN, FORBIDDEN, 409, 409)},  # no parent version
    "research/reward-models/<pk>/activate/": {"post": (LOGIN, FORBIDDEN, 409, 409)},  # other features
    "research/reward-models/rollback/": {"post": (LOGIN, FORBIDDEN, 409, 409)},
    "research/plots/<name>.png": {"get": (LOGIN, FORBIDDEN, 200, 200)},
    "research/cycles/<pk>/comparisons/": {"get": (LOGIN, FORBIDDEN, 200, 200)},
    # --- retargeting: researchers (and admins) only
    "retarget/": {"get": (LOGIN, FORBIDDEN, 200, 200)},
    "retarget/jobs/<pk>/results/<index>.<fmt>": {"get": (LOGIN, FORBIDDEN, 200, 200)},
    "api/retarget/": {"post": (FORBIDDEN, FORBIDDEN, 400, 400)},  # no duration given
    "api/retarget/bounds/": {"get": (FORBIDDEN, FORBIDDEN, 400, 400)},  # no track given
    "api/retarget/<pk>/": {"get": (FORBIDDEN, FORBIDDEN, 200, 200)},
    "api/retarget/<pk>/send/": {"post": (FORBIDDEN, FORBIDDEN, 409, 409)},  # one result: nothing to pair
    # --- the annotation API (anonymous: 403, session authentication has no challenge to send)
    "api/comparisons/next/": {"get": (FORBIDDEN, 200, FORBIDDEN, 200)},
    "api/comparisons/<comparison_id>/skip/": {"post": (FORBIDDEN, 400, FORBIDDEN, 400)},  # no reason given
    "api/comparisons/<comparison_id>/original/": {"get": (FORBIDDEN, NOT_FOUND, 200, 200)},  # not assigned
    "api/judgements/": {"get": (FORBIDDEN, 200, 200, 200), "post": (FORBIDDEN, 400, FORBIDDEN, 400)},
    "api/progress/": {"get": (FORBIDDEN, 200, FORBIDDEN, 200)},
    # --- exports: admins only
    "api/exports/": {"post": (FORBIDDEN, FORBIDDEN, FORBIDDEN, 400)},  # no format given
    "api/exports/stream/": {"get": (FORBIDDEN, FORBIDDEN, FORBIDDEN, 200)},
    "api/exports/stream/card/": {"get": (FORBIDDEN, FORBIDDEN, FORBIDDEN, 200)},
    "api/exports/<pk>/": {"get": (FORBIDDEN, FORBIDDEN, FORBIDDEN, 200)},
    "api/exports/<pk>/download/": {"get": (FORBIDDEN, FORBIDDEN, FORBIDDEN, NOT_FOUND)},  # still queued
    # --- the cycle API: researchers only
    "api/rlhf/cycles/": {"get": (FORBIDDEN, FORBIDDEN, 200, 200),
                         "post": (FORBIDDEN, FORBIDDEN, 409, 409)},  # one judgement: refused up front
    "api/rlhf/cycles/<pk>/": {"get": (FORBIDDEN, FORBIDDEN, 200, 200)},
    "api/rlhf/cycles/preflight/": {"get": (FORBIDDEN, FORBIDDEN, 200, 200)},
    # --- the schema and its docs: any logged-in user
    "api/schema/": {"get": (FORBIDDEN, 200, 200, 200)},
    "api/docs/": {"get": (LOGIN, 200, 200, 200)},
}
# Concrete paths for the admin's regular-expression routes.
EXAMPLE_PATHS = {
    "admin/^(?P<app_label>auth|django_celery_beat|axes|annotations|rlhf)/$": "/admin/annotations/",
    "admin/(?P<url>.*)$": "/admin/no-such-page/",
}

# The admin's generic pages of every registered model (suffix after admin/<app>/<model>/), for a superuser.
ADMIN_MODEL_PAGES = {
    "": 200,
    "add/": 200,  # 403 where the ModelAdmin refuses adding (ADMIN_NO_ADD)
    "<object_id>/history/": 200,
    "<object_id>/delete/": 200,
    "<object_id>/change/": 200,
    "<object_id>/": 302,  # redirects to change/
}
# Rows that only a service creates (an analysis, a rendering, a training run, an export request).
ADMIN_NO_ADD = {"annotations.track", "annotations.edit", "annotations.trackupload", "annotations.exportjob",
                "rlhf.rewardmodelversion", "rlhf.seammodelversion", "annotations.judgement", "axes.accessattempt",
                "axes.accesslog", "axes.accessfailurelog"}
# Rows the admin shows but never deletes (judgements come only from annotators; model versions are
# immutable and others name them as parents).
ADMIN_NO_DELETE = {"annotations.judgement", "rlhf.rewardmodelversion", "rlhf.seammodelversion"}


def _walk(resolver: URLResolver, prefix: str = ""):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


_PARAMETER = re.compile(r"<(?:(\w+):)?(\w+)>")


def all_routes() -> list[str]:
    """Every route of the URLconf, its parameters written without converter (``<pk>``, not ``<int:pk>``)."""
    return [_PARAMETER.sub(r"<\2>", route) for route in _walk(get_resolver())]


def _has_id(route: str) -> bool:
    return any(name == "pk" or name.endswith("id") for _, name in _PARAMETER.findall(route))


def _admin_model_routes() -> dict[str, tuple[type, str]]:
    routes = {}
    for model in admin.site._registry:
        base = f"admin/{model._meta.app_label}/{model._meta.model_name}/"
        for suffix in ADMIN_MODEL_PAGES:
            routes[base + suffix] = (model, suffix)
    return routes


@pytest.fixture
def world(storage_root):
    annotator = make_user("ears", role="annotator")
    researcher = make_user("curie", role="researcher")
    boss = make_user("boss", role="admin", is_staff=True, is_superuser=True)
    comparison = make_comparison()
    make_judgement(make_user("other", role="annotator"), comparison, choice="a", confidence=3)
    rm = RewardModelVersion.objects.create(artifact="reward_models/x.pt", artifact_sha256="0" * 64,
                                           feature_version="v", n_features=125, reward_mean=0.0, reward_std=1.0,
                                           metrics={"curves": []})
    SeamModelVersion.objects.create(artifact="seam_models/x.json", artifact_sha256="0" * 64,
                                    feature_version="seam-features-v1")
    policy = PolicyVersion.objects.create(artifact="policies/x.zip", artifact_sha256="0" * 64,
                                          spaces_spec=spaces_spec(), reward_model=rm, num_timesteps=512)
    cycle = Cycle.objects.create(is_running=False, status=Cycle.Status.DONE)
    # A finished retarget whose result has its delivered (native) file: the download serves it as it is.
    delivered = comparison.edit_a
    delivered.render = {**delivered.render, "native": {**delivered.render["native"], "audio": delivered.audio.name,
                                                        "subtype": "PCM_16", "source_subtype": "PCM_16"}}
    delivered.save(update_fields=["render"])
    # The comparison's original passage, already rendered (this track has no audio to render it from).
    edit = comparison.edit_a
    passage = Passage.objects.create(track=comparison.track, excerpt_start_beat=edit.excerpt_start_beat,
                                     n_source_beats=edit.n_source_beats, listening_audio=edit.audio.name,
                                     duration_seconds=edit.duration_seconds, render=edit.render)
    ListeningCopy.objects.create(passage=passage, format=settings.ANNOTATION_AUDIO_FORMAT, audio=edit.audio.name,
                                 sample_rate=8000, source_sample_rate=8000, channels=1,
                                 duration_seconds=edit.duration_seconds, render=edit.render)
    retarget = RetargetJob.objects.create(
        requested_by=researcher, track=comparison.track, target_seconds=10.0, status=RetargetJob.Status.DONE,
        methods=["heuristic"], results=[{"method": "heuristic", "edit_id": comparison.edit_a_id}])
    job = ExportJob.objects.create(requested_by=boss, format="jsonl")
    upload = TrackUpload.objects.create(uploaded_by=boss, original_name="a.wav", size_bytes=10)
    # django-axes' login records (its admin pages are the admin's like any other model's).
    # (An address and a name no test client logs in with: a successful login clears its own attempts.)
    access = dict(user_agent="test", ip_address="192.0.2.1", username="stranger", http_accept="*/*", path_info="/")
    AccessAttempt.objects.create(**access, get_data="", post_data="", failures_since_start=1)
    AccessLog.objects.create(**access, session_hash="0" * 64)
    AccessFailureLog.objects.create(**access, locked_out=False)
    interval = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    PeriodicTask.objects.create(name="tick", task="rlhf.tasks.maybe_start_cycle", interval=interval)
    CrontabSchedule.objects.create()
    SolarSchedule.objects.create(event="sunrise", latitude=0, longitude=0)
    ClockedSchedule.objects.create(clocked_time=timezone.now())
    ids = {
        "edit_id": comparison.edit_a_id, "comparison_id": comparison.pk, "research/reward-models/": rm.pk,
        "research/policies/": policy.pk, "research/cycles/": cycle.pk, "api/rlhf/cycles/": cycle.pk,
        "api/exports/": job.pk, "plot": "sources", "name": "policy-reward", "index": 0, "fmt": "wav",
        "retarget/": retarget.pk, "api/retarget/": retarget.pk,
        "content_type_id": ContentType.objects.get_for_model(ExportJob).pk, "object_id": job.pk, "id": annotator.pk,
        "track_id": comparison.track_id,
    }
    users = {"anonymous": None, "annotator": annotator, "researcher": researcher, "admin": boss}
    return ids, users, upload


def _fill(route: str, ids: dict, *, missing: bool = False) -> str:
    """A concrete path for ``route``: existing ids (or MISSING_ID), known plot names."""
    def value(match: re.Match) -> str:
        name = match.group(2)
        if name in ("plot", "name", "index", "fmt"):
            return str(ids[name])
        if missing:
            return MISSING_ID
        if name in ids:
            return str(ids[name])
        return str(next(v for k, v in ids.items() if route.startswith(k)))

    return "/" + _PARAMETER.sub(value, route)


def _client(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_every_url_has_an_entry():
    generic = _admin_model_routes()
    routes = [r for r in all_routes() if r not in generic]
    assert len(routes) > 30 and len(generic) > 30  # the walk really reached the site
    assert sorted(set(routes) - set(MATRIX)) == [], "URLs without an entry in MATRIX"
    assert sorted(set(MATRIX) - set(routes)) == [], "entries for URLs that no longer exist"


def _answers(path: str, method: str, expected: tuple, users: dict, *, route: str) -> list[str]:
    wrong = []
    for role, code in zip(ROLES, expected):
        response = getattr(_client(users[role]), method)(path)
        if response.status_code != code:
            wrong.append(f"{method.upper()} {path} as {role}: {response.status_code}, not {code}")
        elif role == "anonymous" and code == LOGIN and not route.endswith("logout/") and "login" not in response["Location"]:
            wrong.append(f"{method.upper()} {path} as {role}: redirected to {response['Location']}, not to a login")
    return wrong


def _refused(role: str, code: int) -> bool:
    return role == "anonymous" or (role != "admin" and code in (FORBIDDEN, NOT_FOUND))


def test_each_role_gets_the_expected_answer(world):
    """One pass over MATRIX; each URL's requests are rolled back, so no answer depends on another URL's."""
    ids, users, _ = world
    wrong = []
    for route, methods in MATRIX.items():
        for method, expected in methods.items():
            with transaction.atomic():
                path = EXAMPLE_PATHS.get(route) or _fill(route, ids)
                wrong += _answers(path, method, expected, users, route=route)
                transaction.set_rollback(True)
            if not _has_id(route):
                continue
            # Refused roles get the same answer for an id that does not exist: ids cannot be probed.
            missing = _fill(route, ids, missing=True)
            for role, code in zip(ROLES, expected):
                if _refused(role, code):
                    answer = getattr(_client(users[role]), method)(missing).status_code
                    if answer != code:
                        wrong.append(f"{method.upper()} {missing} as {role}: {answer}, not {code} (as for an existing id)")
    assert wrong == []


def test_admin_model_pages_are_for_staff_only(world):
    ids, users, _ = world
    checked, wrong = 0, []
    for route, (model, suffix) in _admin_model_routes().items():
        obj = model._default_manager.order_by("pk").first()
        assert obj is not None, f"the world has no {model._meta.label} to open"
        path = "/" + route.replace("<object_id>", str(obj.pk))
        admin_code = ADMIN_MODEL_PAGES[suffix]
        if suffix == "add/" and model._meta.label_lower in ADMIN_NO_ADD:
            admin_code = FORBIDDEN
        if suffix == "<object_id>/delete/" and model._meta.label_lower in ADMIN_NO_DELETE:
            admin_code = FORBIDDEN
        wrong += _answers(path, "get", (LOGIN, LOGIN, LOGIN, admin_code), users, route=route)
        checked += 1
    assert checked >= 60
    assert wrong == []
