"""Admin: the back office for tracks (upload), edits, comparisons and judgements.

Judgements are read-only here: they come only from annotators through the annotation
service (with its listening checks), so a hand-made or edited one would fake the data.
"""
import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as _BaseUserAdmin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from editing.audio import SUPPORTED_EXTENSIONS

from . import converters  # noqa: F401  registers <id:...>
from .errors import DomainError
from .invites import annotator_invite
from .models import Comparison, Edit, ExportJob, Judgement, Track, TrackUpload
from .uploads import track_upload_start


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, (list, tuple)):
            return [single(item, initial) for item in data]
        return [single(data, initial)]


def minutes_seconds(seconds: float | None, *, tenths: bool = False) -> str:
    """``82.785`` -> ``"1:23"`` (``"1:22.8"`` with tenths): durations as people read them."""
    if seconds is None:
        return "–"
    if tenths:
        minutes, rest = divmod(round(seconds, 1), 60)
        return f"{int(minutes)}:{rest:04.1f}"
    minutes, rest = divmod(round(seconds), 60)
    return f"{int(minutes)}:{int(rest):02d}"


class TrackUploadForm(forms.Form):
    files = MultipleFileField(
        widget=MultipleFileInput(attrs={"accept": ",".join(sorted(SUPPORTED_EXTENSIONS))}),
        help_text="WAV, FLAC, OGG or MP3; several files at once are fine.",
    )
    title = forms.CharField(required=False, help_text="optional; defaults to the file name")


# Stored figures the track's page shows as people read them (a method of TrackAdmin each), not as raw fields.
_TRACK_FIELDS_SHOWN_AS = {"duration_seconds": "duration", "tempo_bpm": "tempo", "audio": "audio_file"}


@admin.register(Track)
class TrackAdmin(admin.ModelAdmin):
    list_display = ("title", "duration", "tempo", "n_beats", "feature_version", "created_at")
    search_fields = ("title", "original_name", "content_hash")
    # Every field read-only; those shown another way are left out of the form, or it would offer them for typing.
    readonly_fields = [_TRACK_FIELDS_SHOWN_AS.get(f.name, f.name) for f in Track._meta.fields]
    exclude = tuple(_TRACK_FIELDS_SHOWN_AS)
    change_list_template = "admin/annotations/track/change_list.html"

    @admin.display(description="duration (m:ss)", ordering="duration_seconds")
    def duration(self, track: Track) -> str:
        return minutes_seconds(track.duration_seconds)

    @admin.display(description="tempo", ordering="tempo_bpm")
    def tempo(self, track: Track) -> str:
        return f"{track.tempo_bpm:.1f} BPM"

    @admin.display(description="audio")
    def audio_file(self, track: Track) -> str:
        # Stored media is never served at MEDIA_URL: the link goes to audio_view, behind the admin's login.
        if not track.audio:
            return "–"
        return format_html('<a href="{}">{}</a>', reverse("admin:annotations_track_audio", args=[track.pk]),
                           track.original_name)

    def has_add_permission(self, request):
        # Tracks are only created by analysing an upload (see upload_view).
        return False

    def get_urls(self):
        return [
            path("upload/", self.admin_site.admin_view(self.upload_view), name="annotations_track_upload"),
            path("<id:track_id>/audio/", self.admin_site.admin_view(self.audio_view), name="annotations_track_audio"),
        ] + super().get_urls()

    def audio_view(self, request, track_id: int):
        """The track's audio file as uploaded, to play or download (404 when it has none)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        track = Track.objects.filter(pk=track_id).only("audio", "original_name").first()
        if track is None or not track.audio:
            raise Http404("no such audio")
        return FileResponse(track.audio.open("rb"), filename=track.original_name)

    def upload_view(self, request):
        if not self.has_view_permission(request) or not request.user.has_perm("annotations.change_track"):
            return redirect("admin:index")
        # The request's size was checked before its body was read (feedback_site.limits).
        form = TrackUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            queued = 0
            for upload in form.cleaned_data["files"]:
                try:
                    track_upload_start(uploaded_by=request.user, upload=upload, title=form.cleaned_data["title"])
                except DomainError as err:
                    self.message_user(request, f"Refused: {err}", messages.ERROR)
                    continue
                queued += 1
            if queued:
                self.message_user(request, f"{queued} file(s) stored and queued for analysis; "
                                           "this list shows their progress and outcome.")
            return redirect(reverse("admin:annotations_trackupload_changelist"))
        context = {**self.admin_site.each_context(request), "form": form, "title": "Upload audio",
                   "opts": self.model._meta, "max_upload_mb": round(settings.MAX_UPLOAD_BYTES / 1_000_000)}
        return TemplateResponse(request, "admin/annotations/track/upload.html", context)


@admin.register(TrackUpload)
class TrackUploadAdmin(admin.ModelAdmin):
    """Uploads and their analysis: progress, the track made, or the reason a file was refused."""

    list_display = ("original_name", "status", "progress_percent", "message", "track", "uploaded_by", "created_at")
    list_filter = ("status",)
    readonly_fields = ("uploaded_by", "original_name", "title", "size_bytes", "status", "progress", "message",
                       "track", "created_at", "finished_at")
    exclude = ("file",)

    def has_add_permission(self, request):
        # Uploads come from Tracks -> Upload audio.
        return False

    @admin.display(description="progress")
    def progress_percent(self, upload: TrackUpload) -> str:
        return f"{upload.progress:.0%}"


@admin.register(Edit)
class EditAdmin(admin.ModelAdmin):
    list_display = ("id", "track", "source", "excerpt_start_beat", "n_source_beats", "duration")
    list_filter = ("source",)
    # The rendered audio's length is measured when the edit is rendered, never typed.
    exclude = ("duration_seconds",)
    readonly_fields = ("duration",)

    def has_add_permission(self, request):
        # Edits come only from rendering (services.edit_create), which measures their duration.
        return False

    @admin.display(description="duration (m:ss)", ordering="duration_seconds")
    def duration(self, edit: Edit) -> str:
        return minutes_seconds(edit.duration_seconds, tenths=True)


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = ("id", "track", "edit_a", "edit_b", "proposed_by", "priority", "is_gold")
    list_filter = ("is_gold", "proposed_by")


@admin.register(Judgement)
class JudgementAdmin(admin.ModelAdmin):
    list_display = ("id", "annotator", "comparison", "choice", "confidence", "created_at")
    list_filter = ("choice", "confidence")
    actions = ["export_jsonl", "export_csv", "export_parquet"]

    # View only (see the module docstring); the export actions need no change permission.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    # --- export actions: the selection (or everything filtered) becomes a background export job
    MAX_EXPORT_SELECTION = 100_000

    def _export(self, request, queryset, fmt: str) -> None:
        from .export import export_job_start
        from .roles import is_admin
        from .selectors import ExportFilters

        if not is_admin(request.user):
            self.message_user(request, "Exports are for admins.", messages.ERROR)
            return
        ids = list(queryset.order_by("id").values_list("id", flat=True)[: self.MAX_EXPORT_SELECTION + 1])
        if len(ids) > self.MAX_EXPORT_SELECTION:
            self.message_user(
                request,
                f"More than {self.MAX_EXPORT_SELECTION} judgements selected: use the export API or "
                "`manage.py export_preferences` with filters instead.",
                messages.ERROR,
            )
            return
        job = export_job_start(requested_by=request.user, fmt=fmt, filters=ExportFilters(judgement_ids=tuple(ids)))
        url = reverse("admin:annotations_exportjob_change", args=[job.pk])
        self.message_user(request, format_html('Export {} of {} judgements queued: <a href="{}">status and download</a>.',
                                               job.pk, len(ids), url))

    @admin.action(description="Export selected judgements as JSONL")
    def export_jsonl(self, request, queryset):
        self._export(request, queryset, "jsonl")

    @admin.action(description="Export selected judgements as CSV")
    def export_csv(self, request, queryset):
        self._export(request, queryset, "csv")

    @admin.action(description="Export selected judgements as Parquet")
    def export_parquet(self, request, queryset):
        self._export(request, queryset, "parquet")


@admin.register(ExportJob)
class ExportJobAdmin(admin.ModelAdmin):
    list_display = ("id", "requested_by", "format", "status", "n_rows", "created_at", "finished_at", "download")
    list_filter = ("status", "format")
    readonly_fields = ("requested_by", "format", "filters_summary", "status", "n_rows", "download", "card_summary",
                       "error", "created_at", "finished_at")
    exclude = ("file", "filters", "card")

    def has_add_permission(self, request):
        # Jobs come from the judgement export actions, the API or the command.
        return False

    @admin.display(description="filters")
    def filters_summary(self, job) -> str:
        """The filters, a selection of judgements as its count and id range instead of every id."""
        return _filters_summary(job.filters) or "none: every judgement"

    @admin.display(description="dataset card")
    def card_summary(self, job) -> str:
        """The card without its copy of the filters (shown above), as indented JSON."""
        card = {k: v for k, v in job.card.items() if k != "filters"}
        return format_html("<pre>{}</pre>", json.dumps(card, indent=2)) if card else "–"

    @admin.display(description="file")
    def download(self, job):
        if job.status != ExportJob.Status.DONE or not job.file:
            return "–"
        return format_html('<a href="{}">download {}</a>', reverse("api-export-download", args=[job.pk]), job.format)


def _filters_summary(filters: dict) -> str:
    """Export filters on one line; a selection of judgements as its count and id range."""
    parts = []
    for name, value in filters.items():
        if value in (None, "", [], (), False):
            continue
        if name == "judgement_ids":
            value = f"{len(value)} selected (ids {min(value)} to {max(value)})"
        parts.append(f"{name}: {value}")
    return "; ".join(parts)


# --- Users: invite annotators from the admin (the same service as `manage.py invite_annotator`) ---


_User = get_user_model()
if admin.site.is_registered(_User):
    admin.site.unregister(_User)


@admin.register(_User)
class StudioUserAdmin(_BaseUserAdmin):
    actions = [*(_BaseUserAdmin.actions or []), "invite_as_annotator"]

    @admin.action(description="Invite as annotator (new random password, shown once)")
    def invite_as_annotator(self, request, queryset):
        for user in queryset:
            invitation = annotator_invite(username=user.username, reset_password=True)
            self.message_user(request, f"{user.username} is an annotator; password (shown once): "
                                       f"{invitation.password}", messages.SUCCESS)
