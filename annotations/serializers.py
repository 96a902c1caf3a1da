"""DRF serializers: parse request bodies and query strings, render results.  No business rules here."""
from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from .models import Judgement


class ProgressSerializer(serializers.Serializer):
    done_today = serializers.IntegerField()
    done_total = serializers.IntegerField()
    left_in_queue = serializers.IntegerField()


class ShownSideSerializer(serializers.Serializer):
    edit_id = serializers.IntegerField()
    choice = serializers.CharField(help_text="the `choice` value that picks this side: 'a' or 'b'")
    audio_url = serializers.SerializerMethodField()
    duration_seconds = serializers.FloatField()
    beat_starts_seconds = serializers.ListField(child=serializers.FloatField(),
                                                help_text="output beat boundaries, seconds (n_output_beats + 1)")
    track_beats = serializers.ListField(child=serializers.IntegerField(),
                                        help_text="track beat played by each output beat")
    seam_seconds = serializers.ListField(child=serializers.FloatField())

    def get_audio_url(self, side) -> str:
        return reverse("annotations:audio", args=[side.edit_id])


class ShownComparisonSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    min_listen_seconds = serializers.FloatField()
    left = ShownSideSerializer()
    right = ShownSideSerializer()
    difference_left = serializers.ListField(child=serializers.FloatField(), allow_null=True,
                                            help_text="(start, end) seconds where the left edit differs")
    difference_right = serializers.ListField(child=serializers.FloatField(), allow_null=True)


class NextComparisonSerializer(serializers.Serializer):
    comparison = ShownComparisonSerializer(allow_null=True, help_text="null when nothing is left to judge")
    progress = ProgressSerializer()


class JudgementInputSerializer(serializers.Serializer):
    """A submit.  There is no annotator field: the judgement always belongs to the logged-in user."""

    comparison = serializers.IntegerField()
    choice = serializers.ChoiceField(choices=Judgement.Choice.choices,
                                     help_text="edit A or B of the comparison (see each side's `choice`), or tie")
    confidence = serializers.IntegerField(min_value=1, max_value=5)
    left_edit = serializers.IntegerField(help_text="id of the edit shown on the left")
    seconds_a = serializers.FloatField(min_value=0)
    seconds_b = serializers.FloatField(min_value=0)
    switches = serializers.IntegerField(min_value=0, default=0)
    decision_seconds = serializers.FloatField(min_value=0, default=0.0)
    comment = serializers.CharField(allow_blank=True, required=False, default="", max_length=5000)


class JudgementSerializer(serializers.ModelSerializer):
    annotator_username = serializers.CharField(source="annotator.username", read_only=True)

    class Meta:
        model = Judgement
        fields = ["id", "annotator", "annotator_username", "comparison", "choice", "confidence", "left_edit",
                  "seconds_a", "seconds_b", "switches", "decision_seconds", "comment", "created_at"]
        read_only_fields = fields


class JudgementFilterSerializer(serializers.Serializer):
    annotator = serializers.IntegerField(required=False, help_text="annotator user id")
    comparison = serializers.IntegerField(required=False)
    date = serializers.DateField(required=False, help_text="created on this day (YYYY-MM-DD)")
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class SkipInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=200)


class SkipResultSerializer(serializers.Serializer):
    comparison = serializers.IntegerField(source="comparison_id")
    skipped_reason = serializers.CharField()
