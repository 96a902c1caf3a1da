"""Retargeting in use: the researchers' page and the API (start a job, poll it, download, send to annotators).

Views parse input and call ``rlhf.retarget.services``; the edits are made by a task, so a
long track never holds a request.  Researchers and admins only.
"""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.jobs import job_refresh
from annotations.models import Edit, Track
from annotations.roles import IsResearcher, researcher_required
from annotations.services import edit_native_ensure, edit_native_write
from editing.audio import SUPPORTED_EXTENSIONS
from editing.edit import MAX_PASSAGE_BEATS
from rlhf.models import RetargetJob
from rlhf.retarget.services import (
    DEFAULT_METHODS, retarget_bounds, retarget_default_methods, retarget_job_send, retarget_job_start,
)
from rlhf.versions import policy_active, policy_spaces_problem, reward_model_active

_AUDIO_TYPES = {"wav": ("WAV", "audio/wav"), "flac": ("FLAC", "audio/flac")}


def _job_json(job: RetargetJob) -> dict:
    edits = Edit.objects.in_bulk([r["edit_id"] for r in job.results])
    results = []
    for i, result in enumerate(job.results):
        render = edits[result["edit_id"]].render
        # The delivered file's timeline (the native rendering); results made before it have the edit's own.
        render_info = render.get("native", render)
        results.append({
            **result,
            "audio_url": reverse("rlhf-retarget-audio", args=[job.pk, i, "wav"]),
            "flac_url": reverse("rlhf-retarget-audio", args=[job.pk, i, "flac"]),
            # The beat map the page switches A/B through (the annotation page's rule).
            "beat_starts_seconds": render_info.get("beat_starts_seconds", []),
            "track_beats": render_info.get("track_beats", []),
        })
    return {
        "id": job.pk,
        "status": job.status,
        "progress": job.progress,
        "message": job.message,
        "error": job.error,
        "track": job.track_id,
        "track_title": job.track.title if job.track_id else job.upload_name,
        "target_seconds": job.target_seconds,
        "from_beat": job.from_beat,
        "to_beat": job.to_beat,
        "start_beat": job.start_beat,
        "n_beats": job.n_beats,
        "target_beats": job.target_beats,
        "methods": job.methods,
        "results": results,
        "comparison": job.comparison_id,
        "url": reverse("rlhf-retarget", args=[job.pk]),
    }


class RetargetStartSerializer(serializers.Serializer):
    track = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1,
                                     help_text="an ingested track's id (or upload `file` instead)")
    file = serializers.FileField(required=False, help_text="an audio file to ingest and retarget")
    duration = serializers.CharField(max_length=32, help_text="seconds (150) or m:ss (2:30)")
    from_beat = serializers.IntegerField(required=False, min_value=0, max_value=100_000)
    to_beat = serializers.IntegerField(required=False, min_value=1, max_value=100_000)
    methods = serializers.ListField(child=serializers.CharField(max_length=20), required=False, min_length=1,
                                    max_length=4, help_text=f"default {list(DEFAULT_METHODS)}")

    def validate_file(self, value):
        if Path(value.name).suffix.lower() not in SUPPORTED_EXTENSIONS:
            raise serializers.ValidationError(
                f"{Path(value.name).name}: not an audio file this studio reads ({', '.join(sorted(SUPPORTED_EXTENSIONS))})"
            )
        limit = getattr(settings, "MAX_UPLOAD_BYTES", 200 * 1024 * 1024)
        if value.size > limit:
            raise serializers.ValidationError(f"{Path(value.name).name}: larger than {limit // (1024 * 1024)} MB")
        return value


class RetargetListApi(APIView):
    """POST: start a retarget job (202); the edits are made by a task.  Poll the job's URL."""

    permission_classes = [permissions.IsAuthenticated, IsResearcher]
    # The default parsers (JSON, multipart, form): their JSON parser refuses crafted text, naming the field.

    @extend_schema(request=RetargetStartSerializer, responses={202: dict},
                   summary="Retarget a track (or a passage) to a duration: starts a job")
    def post(self, request):
        serializer = RetargetStartSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        track = None
        if "track" in data:
            track = Track.objects.filter(pk=data["track"]).first()
            if track is None:
                return Response({"detail": f"track {data['track']} does not exist", "code": "track_not_found"},
                                status=status.HTTP_404_NOT_FOUND)
        job = retarget_job_start(requested_by=request.user, duration=data["duration"], track=track,
                                 upload=data.get("file"), from_beat=data.get("from_beat"),
                                 to_beat=data.get("to_beat"), methods=data.get("methods", DEFAULT_METHODS))
        job.refresh_from_db()
        return Response(_job_json(job), status=status.HTTP_202_ACCEPTED)


class RetargetBoundsQuerySerializer(serializers.Serializer):
    track = serializers.IntegerField(min_value=1, max_value=2**31 - 1, help_text="an ingested track's id")
    from_beat = serializers.IntegerField(required=False, min_value=0, max_value=100_000,
                                         help_text="first beat of the passage (default: 0)")
    to_beat = serializers.IntegerField(required=False, min_value=1, max_value=100_000,
                                       help_text="beat after the passage (default: the track's end)")


class RetargetBoundsSerializer(serializers.Serializer):
    track = serializers.IntegerField()
    from_beat = serializers.IntegerField(source="start_beat", help_text="the passage's first beat")
    to_beat = serializers.IntegerField(source="stop_beat", help_text="the beat after the passage")
    lowest_seconds = serializers.FloatField(help_text="the shortest duration accepted, seconds (a multiple of 0.1)")
    highest_seconds = serializers.FloatField(help_text="the longest duration accepted, seconds (a multiple of 0.1)")
    passage_seconds = serializers.FloatField(help_text="the passage's own duration, lead-in and ring-out included")
    lead_in_seconds = serializers.FloatField(help_text="the track's sound before its first beat that the passage plays")
    ring_out_seconds = serializers.FloatField(help_text="the track's sound after its last beat that the passage plays")


class RetargetBoundsApi(APIView):
    """GET: the durations a track (or a passage of it) may be retargeted to, ends included.

    The page's duration slider offers exactly this range; ``POST /api/retarget/`` accepts it.
    """

    permission_classes = [permissions.IsAuthenticated, IsResearcher]

    @extend_schema(parameters=[RetargetBoundsQuerySerializer], operation_id="retarget_bounds",
                   responses={200: RetargetBoundsSerializer,
                              400: OpenApiResponse(description="a passage the retarget would refuse (the reason in "
                                                               "`detail`), or a parameter missing or out of range"),
                              404: OpenApiResponse(description="no such track"),
                              409: OpenApiResponse(description="a track with no stored analysis")},
                   summary="The duration range a track or a passage may be retargeted to")
    def get(self, request):
        query = RetargetBoundsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        track = Track.objects.filter(pk=data["track"]).first()
        if track is None:
            return Response({"detail": f"track {data['track']} does not exist", "code": "track_not_found"},
                            status=status.HTTP_404_NOT_FOUND)
        bounds = retarget_bounds(track=track, from_beat=data.get("from_beat"), to_beat=data.get("to_beat"))
        return Response(RetargetBoundsSerializer({"track": track.pk, **dataclasses.asdict(bounds)}).data)


class RetargetDetailApi(APIView):
    permission_classes = [permissions.IsAuthenticated, IsResearcher]

    @extend_schema(responses={200: dict}, summary="A retarget job: status, progress, results with download URLs")
    def get(self, request, pk: int):
        return Response(_job_json(job_refresh(get_object_or_404(RetargetJob.objects.select_related("track"), pk=pk))))


class RetargetSendApi(APIView):
    permission_classes = [permissions.IsAuthenticated, IsResearcher]

    @extend_schema(request=None, responses={201: dict}, summary="Send a finished job's two edits to the annotators")
    def post(self, request, pk: int):
        comparison = retarget_job_send(job=get_object_or_404(RetargetJob, pk=pk))
        return Response({"comparison": comparison.pk}, status=status.HTTP_201_CREATED)


@researcher_required
@require_GET
def retarget_audio(request: HttpRequest, pk: int, index: int, fmt: str) -> HttpResponse:
    """A job's result as a download: the native rendering (the source's rate and channels) as WAV, or as FLAC.

    Results made before native renderings existed get theirs made now, once.
    """
    job = get_object_or_404(RetargetJob.objects.select_related("track"), pk=pk)
    if fmt not in _AUDIO_TYPES or not 0 <= index < len(job.results):
        raise Http404("no such result")
    edit = get_object_or_404(Edit, pk=job.results[index]["edit_id"])
    title = (job.track.title if job.track_id else "track").replace('"', "")
    name = f"{title} - {job.results[index]['method']} - {round(job.target_seconds)}s.{fmt}"
    container, content_type = _AUDIO_TYPES[fmt]
    if fmt == "wav":
        native = edit_native_ensure(edit=edit)
        return FileResponse(default_storage.open(native["audio"], "rb"), as_attachment=True, filename=name,
                            content_type=content_type)
    buffer = io.BytesIO()
    edit_native_write(edit=edit, out=buffer, container=container)
    buffer.seek(0)
    return FileResponse(buffer, as_attachment=True, filename=name, content_type=content_type)


@researcher_required
@require_GET
def retarget_page(request: HttpRequest) -> HttpResponse:
    """Pick or upload a track, type or drag a duration, hear the policy's and the heuristic's results."""
    policy, reward_model = policy_active(), reward_model_active()
    # A policy trained for other spaces (an older studio's) cannot edit: the page says so and offers the heuristic.
    stale = policy_spaces_problem(policy) if policy else None
    if stale:
        policy = None
    tracks = [
        {"id": t.pk, "title": t.title, "seconds": round(t.duration_seconds, 2), "beats": t.n_beats}
        for t in Track.objects.order_by("title")
    ]
    defaults = retarget_default_methods()
    return render(request, "rlhf/retarget.html", {
        "tracks": tracks,
        "policy": policy,
        "stale_policy": stale,
        "reward_model": reward_model,
        "methods": defaults.methods,
        "methods_reason": defaults.reason,
        "max_beats": MAX_PASSAGE_BEATS,
        "recent": RetargetJob.objects.select_related("track")[:10],
    })
