"""Export API (admins only): background export jobs, their download, and a direct streamed export.

POST /api/exports/                     {"format": "jsonl|csv|parquet", "filters": {...}} -> 201, the job
GET  /api/exports/{id}/                the job: status, row count, card, download_url once done
GET  /api/exports/{id}/download/       the file, streamed
GET  /api/exports/stream/?format=jsonl|csv&FILTER=...   rows streamed as they are read (small datasets)
GET  /api/exports/stream/card/?FILTER=...               the dataset card of that streamed export

Filters are the ``ExportFilters.FIELDS`` (see ``annotations.selectors``).  The
streamed export cannot carry its card (the counts are known only at the end),
so the card has its own endpoint, named in the stream's ``Link`` header.
"""
from __future__ import annotations

from django.http import FileResponse, Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from . import export, roles
from .jobs import job_refresh
from .models import ExportJob
from .selectors import ExportFilters


class _NoFormatOverride:
    URL_FORMAT_OVERRIDE = None

    def __getattr__(self, name):
        return getattr(api_settings, name)


class FormatIsTheExportFormat(DefaultContentNegotiation):
    """``?format=`` names the export format here, not a DRF renderer: negotiate on Accept only."""

    settings = _NoFormatOverride()


class ExportJobSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ExportJob
        fields = ["id", "format", "filters", "status", "n_rows", "card", "error", "created_at", "finished_at",
                  "download_url"]
        read_only_fields = fields

    def get_download_url(self, job: ExportJob) -> str | None:
        if job.status != ExportJob.Status.DONE:
            return None
        return reverse("api-export-download", args=[job.pk])


class ExportRequestSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=export.FORMATS)
    filters = serializers.DictField(required=False, default=dict)


def _file_responses(formats) -> dict:
    """The schema of a file answer: one binary body per format, under the media type it is sent with."""
    return {(200, export.CONTENT_TYPES[fmt]): OpenApiResponse(OpenApiTypes.BINARY) for fmt in formats}


# The query parameters the stream and its card read: every export filter (ExportFilters.FIELDS, their one home),
# as text (lists comma-separated or repeated), the two bounds as dates.
_FILTER_PARAMETERS = [
    OpenApiParameter(name, OpenApiTypes.DATE if name in ("date_from", "date_to") else OpenApiTypes.STR,
                     description=f"export filter {name} (see ExportFilters)")
    for name in ExportFilters.FIELDS
]


def _query_filters(request: Request) -> ExportFilters:
    params = {key: request.query_params.getlist(key) for key in request.query_params if key != "format"}
    return ExportFilters.parse(params)


class ExportJobListView(APIView):
    permission_classes = [roles.IsAdmin]
    throttle_scope = "export_create"  # each job reads every judgement: rate in settings

    @extend_schema(request=ExportRequestSerializer, responses={201: ExportJobSerializer},
                   summary="Start a background export of the preference dataset")
    def post(self, request: Request) -> Response:
        data = ExportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        filters = ExportFilters.parse(data.validated_data["filters"])
        job = export.export_job_start(requested_by=request.user, fmt=data.validated_data["format"], filters=filters)
        job.refresh_from_db()
        return Response(ExportJobSerializer(job).data, status=status.HTTP_201_CREATED)


class ExportJobDetailView(APIView):
    permission_classes = [roles.IsAdmin]

    @extend_schema(responses={200: ExportJobSerializer}, summary="An export job: status, card, download link")
    def get(self, request: Request, pk: int) -> Response:
        return Response(ExportJobSerializer(job_refresh(get_object_or_404(ExportJob, pk=pk))).data)


class ExportJobDownloadView(APIView):
    permission_classes = [roles.IsAdmin]

    @extend_schema(responses=_file_responses(export.FORMATS), summary="Download a finished export file")
    def get(self, request: Request, pk: int) -> FileResponse:
        job = get_object_or_404(ExportJob, pk=pk)
        if job.status != ExportJob.Status.DONE or not job.file:
            raise Http404(f"export {job.pk} is {job.status}, nothing to download yet")
        return FileResponse(
            job.file.open("rb"), as_attachment=True, filename=job.file.name.rsplit("/", 1)[-1],
            content_type=export.CONTENT_TYPES[job.format],
        )


class ExportStreamView(APIView):
    permission_classes = [roles.IsAdmin]
    content_negotiation_class = FormatIsTheExportFormat

    @extend_schema(responses=_file_responses(export.STREAMABLE_FORMATS),
                   parameters=[OpenApiParameter("format", OpenApiTypes.STR, enum=export.STREAMABLE_FORMATS),
                               *_FILTER_PARAMETERS],
                   summary="Stream the filtered preference dataset as JSONL or CSV")
    def get(self, request: Request) -> StreamingHttpResponse:
        fmt = export.check_format(request.query_params.get("format", "jsonl"), streamed=True)
        filters = _query_filters(request)
        response = StreamingHttpResponse(
            export.export_stream(filters=filters, fmt=fmt), content_type=export.CONTENT_TYPES[fmt]
        )
        response["Content-Disposition"] = f'attachment; filename="preferences.{fmt}"'
        response["X-Schema-Version"] = export.SCHEMA_VERSION
        card_url = request.build_absolute_uri(reverse("api-export-stream-card")) + (
            "?" + request.META["QUERY_STRING"] if request.META.get("QUERY_STRING") else ""
        )
        response["Link"] = f'<{card_url}>; rel="describedby"'
        return response


class ExportStreamCardView(APIView):
    permission_classes = [roles.IsAdmin]
    content_negotiation_class = FormatIsTheExportFormat

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, parameters=_FILTER_PARAMETERS,
                   summary="The dataset card of a streamed export")
    def get(self, request: Request) -> Response:
        return Response(export.export_card(filters=_query_filters(request)))
