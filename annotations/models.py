"""The human side of the loop: tracks, edits, comparisons and judgements.

Roles are Django groups (see ``annotations.roles``): annotators judge,
researchers read every judgement and start training, admins manage users and
export.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.signals import post_delete
from django.dispatch import receiver


class Track(models.Model):
    """An ingested audio file with its beat grid and per-beat features.

    The audio is stored as uploaded; ``analysis`` is an ``.npz`` holding
    ``beat_samples`` (int64, n_beats + 1 boundaries at ``sample_rate``),
    ``bar_positions`` (int8, n_beats) and ``features`` (float32, n_beats x 121).
    """

    title = models.CharField(max_length=255)
    original_name = models.CharField(max_length=500)
    content_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the file bytes")
    audio = models.FileField(upload_to="tracks/audio/", max_length=500)
    analysis = models.FileField(upload_to="tracks/analysis/", max_length=500)
    sample_rate = models.PositiveIntegerField(help_text="analysis sample rate, Hz")
    source_sample_rate = models.PositiveIntegerField(help_text="sample rate of the uploaded file, Hz")
    duration_seconds = models.FloatField()
    tempo_bpm = models.FloatField()
    n_beats = models.PositiveIntegerField()
    feature_version = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["title", "id"]

    def __str__(self) -> str:
        return self.title


class Edit(models.Model):
    """One candidate edit of an excerpt of a track, rendered to audio.

    ``source`` names what made it, e.g. ``"policy:v3"`` or ``"baseline:random"``;
    it is the unit that Bradley-Terry scores are reported for.
    ``render`` keeps what the annotation page needs to map a playhead between
    edits: output beat boundaries in seconds, the source beat of each output
    beat, and seam positions in seconds.
    """

    track = models.ForeignKey(Track, on_delete=models.CASCADE, related_name="edits")
    source = models.CharField(max_length=100, db_index=True)
    excerpt_start_beat = models.PositiveIntegerField()
    n_source_beats = models.PositiveIntegerField()
    target_beats = models.PositiveIntegerField(null=True, blank=True)
    actions = models.JSONField(help_text="action id per source step")
    entries = models.JSONField(help_text="the edit as (source beat, transition, action) entries")
    actions_key = models.CharField(max_length=64, help_text="hash of excerpt + entries, for de-duplication")
    audio = models.FileField(upload_to="edits/", max_length=500, help_text="the rendered WAV (export, download)")
    listening_audio = models.FileField(
        upload_to="edits/", max_length=500, blank=True,
        help_text="compressed (MP3) copy streamed to the annotation page; made when the edit is stored, "
                  "or on first request for edits stored before it existed",
    )
    duration_seconds = models.FloatField()
    render = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["track", "actions_key"], name="unique_edit_per_track"),
        ]

    def __str__(self) -> str:
        return f"edit {self.pk} of {self.track} ({self.source})"


class Passage(models.Model):
    """The unedited source passage that the edits of a comparison were cut from, as annotators hear it.

    One per (track, start beat, length); its audio in the site's listening format is a
    ``ListeningCopy`` of its native render (``passage_listening_copy_ensure``); the fields
    below are the legacy MP3 rendering, made on first request by
    ``annotations.services.passage_listening_ensure``, through the same render as
    the edits (an edit that keeps every beat), so it has their loudness and its
    beat map.  ``render`` holds that map: ``beat_starts_seconds`` (n_source_beats
    + 1) and ``track_beats`` (n_source_beats).
    """

    track = models.ForeignKey(Track, on_delete=models.CASCADE, related_name="passages")
    excerpt_start_beat = models.PositiveIntegerField()
    n_source_beats = models.PositiveIntegerField()
    listening_audio = models.FileField(upload_to="passages/", max_length=500, blank=True,
                                       help_text="compressed (MP3) rendering, as the edits' listening copies")
    duration_seconds = models.FloatField(default=0.0)
    render = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["track", "excerpt_start_beat", "n_source_beats"],
                                    name="one_passage_per_excerpt"),
        ]

    def __str__(self) -> str:
        return f"{self.track}: beats {self.excerpt_start_beat}+{self.n_source_beats}"


class ListeningCopy(models.Model):
    """What annotators hear of an edit or of a passage in one format, encoded from the native render.

    The native render (``editing.render.render_native``: the source's rate and channels, with the
    track's lead-in/ring-out where the edit keeps them) encoded as ``format``; ``render`` holds the
    timeline of THIS file (``beat_starts_seconds``, ``track_beats``, ``seam_seconds``), which the
    page's playhead mapping uses.  Made on first request by ``annotations.services``
    (``edit_listening_copy_ensure`` / ``passage_listening_copy_ensure``); exactly one of ``edit``
    and ``passage`` is set.
    """

    class Format(models.TextChoices):
        OPUS = "opus", "Opus (Ogg), 48 kHz"
        FLAC = "flac", "FLAC, lossless at the source's rate"

    edit = models.ForeignKey("Edit", on_delete=models.CASCADE, null=True, blank=True, related_name="listening_copies")
    passage = models.ForeignKey(Passage, on_delete=models.CASCADE, null=True, blank=True,
                                related_name="listening_copies")
    format = models.CharField(max_length=8, choices=Format.choices)
    audio = models.FileField(upload_to="listening/", max_length=500)
    sample_rate = models.PositiveIntegerField(help_text="Hz of the encoded file (48000 for Opus)")
    source_sample_rate = models.PositiveIntegerField(help_text="Hz of the track's source (and the native render)")
    channels = models.PositiveSmallIntegerField(help_text="as the source: 1 or 2")
    duration_seconds = models.FloatField()
    render = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["edit", "format"], condition=models.Q(edit__isnull=False),
                                    name="one_listening_copy_per_edit_format"),
            models.UniqueConstraint(fields=["passage", "format"], condition=models.Q(passage__isnull=False),
                                    name="one_listening_copy_per_passage_format"),
            models.CheckConstraint(condition=models.Q(edit__isnull=False, passage__isnull=True)
                                   | models.Q(edit__isnull=True, passage__isnull=False),
                                   name="listening_copy_of_edit_or_passage"),
        ]

    def __str__(self) -> str:
        owner = f"edit {self.edit_id}" if self.edit_id else f"passage {self.passage_id}"
        return f"{owner} as {self.format} ({self.sample_rate} Hz, {self.channels} ch)"


class Comparison(models.Model):
    """Two edits of the same track, to be judged by several annotators."""

    track = models.ForeignKey(Track, on_delete=models.CASCADE, related_name="comparisons")
    edit_a = models.ForeignKey(Edit, on_delete=models.CASCADE, related_name="+")
    edit_b = models.ForeignKey(Edit, on_delete=models.CASCADE, related_name="+")
    proposed_by = models.CharField(max_length=100, help_text="what proposed it, e.g. 'cycle 3' or 'demo'")
    predicted_preference = models.FloatField(
        null=True, blank=True, help_text="reward model's P(A preferred over B) when proposed"
    )
    reward_model_version = models.CharField(max_length=50, blank=True)
    priority = models.FloatField(default=0.0, db_index=True)
    required_judgements = models.PositiveSmallIntegerField(default=3)
    is_gold = models.BooleanField(default=False, help_text="has a known answer; used to check annotators")
    gold_answer = models.CharField(max_length=1, blank=True, choices=[("a", "A"), ("b", "B")])
    is_hidden_reference = models.BooleanField(
        default=False,
        help_text="both sides play the same edit (a hidden reference, as in MUSHRA): gold whose right answer is "
                  "a tie or a low confidence; measures annotator reliability, never trains")
    repeat_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="repeats",
        help_text="a repeated comparison with sides swapped, to measure self-consistency",
    )
    n_judgements = models.PositiveIntegerField(
        default=0, editable=False,
        help_text="judgements stored: a copy of COUNT(judgements) kept under the comparison's row lock, "
                  "so that finding open work need not count every comparison's judgements",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(edit_a=models.F("edit_b")) | Q(is_hidden_reference=True),
                                   name="comparison_two_edits"),
            # A hidden reference is gold (kept out of training and out of the regular queue) with no A/B answer.
            models.CheckConstraint(condition=Q(is_hidden_reference=False)
                                   | Q(edit_a=models.F("edit_b"), is_gold=True, gold_answer=""),
                                   name="hidden_reference_is_gold_of_one_edit"),
        ]
        indexes = [
            # The assignment queue in its order, holding only comparisons still short of judgements:
            # `next` walks it from the top and stops at the first free slot instead of scanning them all.
            models.Index(F("priority").desc(), "created_at", "id",
                         condition=Q(n_judgements__lt=F("required_judgements")), name="comparison_open_queue"),
        ]

    def __str__(self) -> str:
        return f"comparison {self.pk}: {self.edit_a_id} vs {self.edit_b_id}"


class Judgement(models.Model):
    """One annotator's answer to one comparison (at most one each)."""

    class Choice(models.TextChoices):
        A = "a", "A"
        B = "b", "B"
        TIE = "tie", "Tie"

    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judgements")
    comparison = models.ForeignKey(Comparison, on_delete=models.PROTECT, related_name="judgements")
    choice = models.CharField(max_length=3, choices=Choice.choices)
    confidence = models.PositiveSmallIntegerField()
    left_edit = models.ForeignKey(Edit, on_delete=models.PROTECT, related_name="+", help_text="edit shown on the left")
    seconds_a = models.FloatField(default=0.0, help_text="seconds listened to edit A, as the client reported "
                                                         "(at most the wall time since the assignment)")
    seconds_b = models.FloatField(default=0.0, help_text="seconds listened to edit B, as the client reported "
                                                         "(at most the wall time since the assignment)")
    switches = models.PositiveIntegerField(default=0)
    decision_seconds = models.FloatField(default=0.0, help_text="time from page load to submit, as the client "
                                                                "reported (at most the wall time since the assignment)")
    # Measured by the server, not reported: null on judgements stored before listening was measured.
    served_seconds_a = models.FloatField(null=True, blank=True,
                                         help_text="seconds of edit A's audio the audio view served to the annotator")
    served_seconds_b = models.FloatField(null=True, blank=True,
                                         help_text="seconds of edit B's audio the audio view served to the annotator")
    wall_seconds = models.FloatField(null=True, blank=True,
                                     help_text="server time from the assignment being given to the submit")
    original_heard = models.BooleanField(
        default=False, help_text="the server served the unedited source passage (the page's Original) to the "
                                 "annotator for this comparison before the submit")
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["annotator", "comparison"], name="one_judgement_per_annotator"),
            models.CheckConstraint(condition=Q(confidence__gte=1, confidence__lte=5), name="confidence_1_to_5"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.annotator} on {self.comparison_id}: {self.choice} ({self.confidence})"


class Assignment(models.Model):
    """A comparison handed to one annotator, with the side each edit is shown on.

    An open assignment holds one of the comparison's judgement slots until it is
    completed, skipped or expires.  One given ahead (``assignment_ahead``) holds
    its slot at once but is shown, and starts its listening clock, only when
    ``assignment_next`` hands it out.
    """

    class SkipReason(models.TextChoices):
        BROKEN_AUDIO = "broken_audio", "Broken audio"
        IDENTICAL = "identical", "They sound identical"
        CANNOT_DECIDE = "cannot_decide", "Cannot decide"
        OTHER = "other", "Other"

    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    left_is_a = models.BooleanField(help_text="True when edit A is shown on the left")
    created_at = models.DateTimeField(auto_now_add=True)
    shown_at = models.DateTimeField(
        null=True, blank=True,
        help_text="when it was first handed out as the comparison to judge now (empty while only prefetched "
                  "with ?ahead=1); its listening clock starts here")
    expires_at = models.DateTimeField(db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    skipped_reason = models.CharField(max_length=200, blank=True,
                                      help_text="non-empty once skipped: the preset's label or the annotator's words")
    skip_reason_choice = models.CharField(max_length=20, blank=True, choices=SkipReason.choices,
                                          help_text="the preset reason picked when skipping")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["annotator", "comparison"], name="one_assignment_per_annotator"),
        ]
        indexes = [
            # Open assignments are a handful among all ever made: find them without reading the rest.
            models.Index(fields=["expires_at", "comparison"], condition=Q(completed_at__isnull=True, skipped_reason=""),
                         name="assignment_open"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} <- comparison {self.comparison_id}"


class ListeningRecord(models.Model):
    """Audio of one side of an assignment (or of its original passage) served to its annotator: which bytes, and when.

    The audio view writes one per response (``annotations.listening``), after
    streaming, with the bytes that left the server; a judgement is accepted
    only when these cover enough of both sides.  The server, not the page,
    decides what was heard.
    """

    class Side(models.TextChoices):
        A = "a", "A"
        B = "b", "B"
        ORIGINAL = "o", "the original"

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="listening")
    side = models.CharField(max_length=1, choices=Side.choices)
    first_byte = models.PositiveBigIntegerField(help_text="offset of the first byte served")
    n_bytes = models.PositiveBigIntegerField(help_text="bytes streamed from first_byte on")
    file_bytes = models.PositiveBigIntegerField(help_text="size of the whole audio file")
    file_seconds = models.FloatField(null=True, blank=True,
                                     help_text="duration of the file served, seconds (empty: the edit's own "
                                               "rendering, whose duration the edit gives)")
    started_at = models.DateTimeField(help_text="when the request arrived")
    finished_at = models.DateTimeField(help_text="when the last byte was handed over (or the client went away)")

    class Meta:
        indexes = [models.Index(fields=["assignment", "side"], name="listening_by_assignment")]

    def __str__(self) -> str:
        return (f"assignment {self.assignment_id} side {self.side}: bytes {self.first_byte}+{self.n_bytes}"
                f" of {self.file_bytes}")


@receiver(post_delete, sender=Judgement)
def _judgement_deleted(sender, instance: Judgement, **kwargs) -> None:
    # A deleted judgement (admin, shell) frees its slot: recount so that the comparison is offered again.
    remaining = Judgement.objects.filter(comparison_id=instance.comparison_id).count()
    Comparison.objects.filter(pk=instance.comparison_id).update(n_judgements=remaining)


class ExportJob(models.Model):
    """A preference-dataset export, run in the background and downloaded when ready."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    class Format(models.TextChoices):
        JSONL = "jsonl"
        CSV = "csv"
        PARQUET = "parquet"

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    format = models.CharField(max_length=10, choices=Format.choices)
    filters = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    n_rows = models.PositiveIntegerField(default=0)
    file = models.FileField(upload_to="exports/", max_length=500, blank=True)
    card = models.JSONField(default=dict, help_text="dataset card: counts, agreement, filters, schema version")
    error = models.TextField(blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="last sign of life while running "
                                        "(annotations.jobs)")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"export {self.pk} ({self.format}, {self.status})"


class TrackUpload(models.Model):
    """An audio file uploaded in the admin, analysed by a task (``annotations.tasks.track_upload_analyse``).

    The request only stores the file and queues the analysis, so a long or
    slow file never holds a web worker; the row reports the analysis's progress
    and its outcome (the track, or the reason it was refused).
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        ANALYSING = "analysing"
        DONE = "done"
        DUPLICATE = "duplicate", "same content as an existing track"
        REFUSED = "refused"
        FAILED = "failed", "failed (its worker stopped)"

    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    original_name = models.CharField(max_length=255)
    title = models.CharField(max_length=255, blank=True)
    file = models.FileField(upload_to="uploads/", max_length=500, blank=True,
                            help_text="the uploaded file until it is analysed (then removed: the track keeps its copy)")
    size_bytes = models.PositiveBigIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0, help_text="0 to 1")
    message = models.TextField(blank=True, help_text="the outcome, or the reason the file was refused")
    track = models.ForeignKey(Track, null=True, blank=True, on_delete=models.SET_NULL, related_name="uploads")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="last sign of life while analysing "
                                        "(annotations.jobs)")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"upload {self.pk} ({self.original_name}, {self.status})"
