from django.contrib import admin

from .models import Comparison, Edit, Judgement, Track


@admin.register(Track)
class TrackAdmin(admin.ModelAdmin):
    list_display = ("title", "duration_seconds", "tempo_bpm", "n_beats", "feature_version", "created_at")
    search_fields = ("title", "original_name", "content_hash")
    readonly_fields = [f.name for f in Track._meta.fields]


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
