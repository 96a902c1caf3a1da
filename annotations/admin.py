"""Admin: the back office for tracks (upload), edits, comparisons and judgements."""
import tempfile
from pathlib import Path

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as _BaseUserAdmin
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from editing.audio import SUPPORTED_EXTENSIONS, AudioError

from .invites import annotator_invite
from .models import Comparison, Edit, ExportJob, Judgement, Track
from .services import track_ingest


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, (list, tuple)):
            return [single(item, initial) for item in data]
        return [single(data, initial)]


class TrackUploadForm(forms.Form):
    files = MultipleFileField(
        widget=MultipleFileInput(attrs={"accept": ",".join(sorted(SUPPORTED_EXTENSIONS))}),
        help_text="WAV, FLAC, OGG or MP3; several files at once are fine.",
    )
    title = forms.CharField(required=False, help_text="optional; defaults to the file name")


@admin.register(Track)
class TrackAdmin(admin.ModelAdmin):
    list_display = ("title", "duration_seconds", "tempo_bpm", "n_beats", "feature_version", "created_at")
    search_fields = ("title", "original_name", "content_hash")
    readonly_fields = [f.name for f in Track._meta.fields]
    change_list_template = "admin/annotations/track/change_list.html"

    def has_add_permission(self, request):
        # Tracks are only created by analysing an upload (see upload_view).
        return False

    def get_urls(self):
        return [
            path("upload/", self.admin_site.admin_view(self.upload_view), name="annotations_track_upload"),
        ] + super().get_urls()

    def upload_view(self, request):
        if not self.has_view_permission(request) or not request.user.has_perm("annotations.change_track"):
            return redirect("admin:index")
        form = TrackUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            for upload in form.cleaned_data["files"]:
                with tempfile.TemporaryDirectory() as tmp:
                    local = Path(tmp) / Path(upload.name).name
                    with open(local, "wb") as out:
                        for chunk in upload.chunks():
                            out.write(chunk)
                    try:
                        track, created = track_ingest(path=local, title=form.cleaned_data["title"] or None)
                    except AudioError as err:
                        self.message_user(request, f"Refused: {err}", messages.ERROR)
                        continue
                if created:
                    self.message_user(request, f"Ingested {track.title}: {track.n_beats} beats at {track.tempo_bpm:.1f} BPM")
                else:
                    self.message_user(request, f"{upload.name}: same content as track '{track.title}', nothing added",
                                      messages.WARNING)
            return redirect(reverse("admin:annotations_track_changelist"))
        context = {**self.admin_site.each_context(request), "form": form, "title": "Upload audio",
                   "opts": self.model._meta}
        return TemplateResponse(request, "admin/annotations/track/upload.html", context)


@admin.register(Edit)
class EditAdmin(admin.ModelAdmin):
    list_display = ("id", "track", "source", "excerpt_start_beat", "n_source_beats", "duration_seconds")
    list_filter = ("source",)


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = ("id", "track", "edit_a", "edit_b", "proposed_by", "priority", "is_gold")
    list_filter = ("is_gold", "proposed_by")


@admin.register(Judgement)
class JudgementAdmin(admin.ModelAdmin):
    list_display = ("id", "annotator", "comparison", "choice", "confidence", "created_at")
    list_filter = ("choice", "confidence")
    actions = ["export_jsonl", "export_csv", "export_parquet"]

    # --- export actions: the selection (or everything filtered) becomes a background export job
    MAX_EXPORT_SELECTION = 100_000

    def _export(self, request, queryset, fmt: str) -> None:
        from feedback_site.background import enqueue

        from .export import export_job_create
        from .roles import is_admin
        from .selectors import ExportFilters
        from .tasks import export_run

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
        job = export_job_create(requested_by=request.user, fmt=fmt, filters=ExportFilters(judgement_ids=tuple(ids)))
        enqueue(export_run.si(job.pk))
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
    readonly_fields = ("requested_by", "format", "filters", "status", "n_rows", "download", "card", "error",
                       "created_at", "finished_at")
    exclude = ("file",)

    def has_add_permission(self, request):
        # Jobs come from the judgement export actions, the API or the command.
        return False

    @admin.display(description="file")
    def download(self, job):
        if job.status != ExportJob.Status.DONE or not job.file:
            return "–"
        return format_html('<a href="{}">download {}</a>', reverse("api-export-download", args=[job.pk]), job.format)


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
