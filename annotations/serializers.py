"""DRF serializers: parse request bodies and query strings, render results.  No business rules here."""
from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.urls import reverse
from rest_framework import serializers

from .converters import MAX_ID
from .judgements import MAX_REPORTED_SECONDS, MAX_SWITCHES
from .models import Assignment, Judgement
from .selectors import EARLIEST_DATE, LATEST_DATE, MAX_USER_ID

# Row ids bounded like their columns, so a larger number is a 400, not a database error: this
# project's rows are BigAutoField (64-bit signed, MAX_ID), django.contrib.auth's users AutoField (MAX_USER_ID).


def id_field(*, max_value: int = MAX_ID, **kwargs) -> serializers.IntegerField:
    """An integer field for a row id (1..``max_value``)."""
    return serializers.IntegerField(min_value=1, max_value=max_value, **kwargs)


class ProgressSerializer(serializers.Serializer):
    done_today = serializers.IntegerField()
    done_total = serializers.IntegerField()
    left_in_queue = serializers.IntegerField()


class ShownSideSerializer(serializers.Serializer):
    edit_id = serializers.IntegerField()
    choice = serializers.CharField(help_text="the `choice` value that picks this side: 'a' or 'b'")
    audio_url = serializers.SerializerMethodField(
        help_text="what annotators hear (settings.ANNOTATION_AUDIO_FORMAT): Opus at 48 kHz or FLAC at the "
                  "source's rate, the source's channels (the legacy MP3: analysis rate, mono)")
    audio_format = serializers.CharField(help_text="'opus', 'flac' or 'mp3'")
    wav_url = serializers.SerializerMethodField(help_text="the rendered WAV, for download")
    duration_seconds = serializers.FloatField()
    min_listen_seconds = serializers.FloatField(
        help_text="seconds this side must be heard: the site's minimum, or the whole edit once if shorter")
    beat_starts_seconds = serializers.ListField(child=serializers.FloatField(),
                                                help_text="output beat boundaries, seconds (n_output_beats + 1)")
    track_beats = serializers.ListField(child=serializers.IntegerField(),
                                        help_text="track beat played by each output beat")
    seam_seconds = serializers.ListField(child=serializers.FloatField())

    def get_audio_url(self, side) -> str:
        return reverse("annotations:audio", args=[side.edit_id]) + f"?format={side.audio_format}"

    def get_wav_url(self, side) -> str:
        return reverse("annotations:audio", args=[side.edit_id])


class ShownComparisonSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    min_listen_seconds = serializers.FloatField(help_text="the site's minimum; each side says its own")
    left = ShownSideSerializer()
    right = ShownSideSerializer()
    difference_left = serializers.ListField(child=serializers.FloatField(), allow_null=True,
                                            help_text="(start, end) seconds where the left edit differs")
    difference_right = serializers.ListField(child=serializers.FloatField(), allow_null=True)
    loop_useful = serializers.BooleanField(help_text="false when the difference region is about both whole edits")


class OriginalSerializer(serializers.Serializer):
    """The unedited source passage both edits were cut from: optional listening, at the same loudness."""

    comparison = serializers.IntegerField(source="comparison_id")
    audio_url = serializers.SerializerMethodField(
        help_text="the passage, encoded as the edits are; fetching it is recorded, and the judgement says so "
                  "(original_heard)")
    audio_format = serializers.CharField(help_text="'opus', 'flac' or 'mp3', as the edits'")
    duration_seconds = serializers.FloatField()
    beat_starts_seconds = serializers.ListField(child=serializers.FloatField(),
                                                help_text="beat boundaries, seconds (n_source_beats + 1)")
    track_beats = serializers.ListField(child=serializers.IntegerField(),
                                        help_text="track beat played by each beat: the passage's, in order")

    def get_audio_url(self, original) -> str:
        return reverse("annotations:original-audio", args=[original.comparison_id])


class NextQuerySerializer(serializers.Serializer):
    ahead = serializers.BooleanField(default=False, help_text="also assign and return the next comparison")


class NextComparisonSerializer(serializers.Serializer):
    comparison = ShownComparisonSerializer(allow_null=True, help_text="null when nothing is left to judge")
    upcoming = ShownComparisonSerializer(allow_null=True, required=False,
                                         help_text="with ?ahead=1: the comparison after this one, already "
                                                   "assigned, so its audio can be fetched now")
    progress = ProgressSerializer()


class JudgementInputSerializer(serializers.Serializer):
    """A submit.  There is no annotator field: the judgement always belongs to the logged-in user."""

    comparison = id_field()
    choice = serializers.ChoiceField(choices=Judgement.Choice.choices,
                                     help_text="edit A or B of the comparison (see each side's `choice`), or tie")
    confidence = serializers.IntegerField(min_value=1, max_value=5)
    left_edit = id_field(help_text="id of the edit shown on the left")
    seconds_a = serializers.FloatField(min_value=0, max_value=MAX_REPORTED_SECONDS,
                                       help_text="seconds heard of edit A, as counted by the page; stored at most "
                                                 "the wall time since the assignment")
    seconds_b = serializers.FloatField(min_value=0, max_value=MAX_REPORTED_SECONDS)
    switches = serializers.IntegerField(min_value=0, max_value=MAX_SWITCHES, default=0)
    decision_seconds = serializers.FloatField(min_value=0, max_value=MAX_REPORTED_SECONDS, default=0.0)
    comment = serializers.CharField(allow_blank=True, required=False, default="", max_length=5000)


class JudgementSerializer(serializers.ModelSerializer):
    annotator_username = serializers.CharField(source="annotator.username", read_only=True)

    class Meta:
        model = Judgement
        fields = ["id", "annotator", "annotator_username", "comparison", "choice", "confidence", "left_edit",
                  "seconds_a", "seconds_b", "switches", "decision_seconds", "served_seconds_a", "served_seconds_b",
                  "wall_seconds", "original_heard", "comment", "created_at"]
        read_only_fields = fields


class JudgementFilterSerializer(serializers.Serializer):
    annotator = id_field(max_value=MAX_USER_ID, required=False, help_text="annotator user id")
    comparison = id_field(required=False)
    date = serializers.DateField(required=False, help_text="created on this day (YYYY-MM-DD)",
                                 validators=[MinValueValidator(EARLIEST_DATE), MaxValueValidator(LATEST_DATE)])
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class SkipInputSerializer(serializers.Serializer):
    reason_choice = serializers.ChoiceField(choices=Assignment.SkipReason.choices,
                                            default=Assignment.SkipReason.OTHER)
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True, default="",
                                   help_text="in words; required when reason_choice is 'other'")


class SkipResultSerializer(serializers.Serializer):
    comparison = serializers.IntegerField(source="comparison_id")
    skip_reason_choice = serializers.CharField()
    skipped_reason = serializers.CharField()
