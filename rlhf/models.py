"""Versions of the reward model, the seam model and the policy, and the cycles that make them.

A version is immutable once registered: its artifact is written to a temporary
path, verified by loading, moved into place and registered in one transaction
(``rlhf.artifacts``).  At most one version of each kind is active.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class RewardModelVersion(models.Model):
    """A trained reward-model ensemble and exactly what it was trained on."""

    artifact = models.FileField(max_length=500, help_text="checkpoint, relative to the storage root")
    artifact_sha256 = models.CharField(max_length=64)
    feature_version = models.CharField(max_length=100, help_text="editing.edit.MODEL_FEATURE_VERSION at training")
    n_features = models.PositiveIntegerField(help_text="per-beat input size")
    judgement_ids = models.JSONField(default=list, help_text="ids of the judgements trained on, ascending")
    judgements_sha256 = models.CharField(
        max_length=64, help_text="hash of (id, comparison, choice, confidence) of every judgement trained on"
    )
    n_judgements = models.PositiveIntegerField(default=0)
    n_comparisons = models.PositiveIntegerField(default=0)
    hyperparameters = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, help_text="validation metrics and loss curves")
    reward_mean = models.FloatField(help_text="mean ensemble reward over the reference edits")
    reward_std = models.FloatField(help_text="spread of the ensemble reward over the reference edits")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children",
        help_text="the version this one was warm-started from, or the one active when it was trained",
    )
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_reward_model"),
        ]

    @property
    def label(self) -> str:
        return f"rm-{self.pk}"

    def __str__(self) -> str:
        return f"{self.label}{' (active)' if self.is_active else ''}"


class PolicyVersion(models.Model):
    """A trained editing policy (MaskablePPO checkpoint) and what it was trained against."""

    artifact = models.FileField(max_length=500, help_text="checkpoint (.zip), relative to the storage root")
    artifact_sha256 = models.CharField(max_length=64)
    spaces_spec = models.JSONField(help_text="editing.spaces.spaces_spec() the policy was trained on")
    reward_model = models.ForeignKey(
        RewardModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="policies",
        help_text="the reward model whose learned reward it was trained on",
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children",
        help_text="the version it was fine-tuned from; empty for a first policy",
    )
    num_timesteps = models.PositiveBigIntegerField(help_text="PPO steps taken in total, parents included")
    hyperparameters = models.JSONField(default=dict, help_text="PPO and environment configuration")
    metrics = models.JSONField(default=dict, help_text="training summary and per-update metrics")
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_policy"),
        ]

    @property
    def label(self) -> str:
        return f"v{self.pk}"

    @property
    def source(self) -> str:
        """``Edit.source`` of the edits this version makes."""
        return f"policy:{self.label}"

    def __str__(self) -> str:
        return f"policy {self.label}{' (active)' if self.is_active else ''}"


class SeamModelVersion(models.Model):
    """A learned seam cost (``rlhf.learning.seam_model``): the residual the learned planner adds to the heuristic's."""

    artifact = models.FileField(max_length=500, help_text="the model (JSON), relative to the storage root")
    artifact_sha256 = models.CharField(max_length=64)
    feature_version = models.CharField(max_length=100, help_text="rlhf.learning.seam_model.SEAM_FEATURE_VERSION")
    judgement_ids = models.JSONField(default=list, help_text="ids of the judgements trained on, ascending")
    n_judgements = models.PositiveIntegerField(default=0)
    n_pairs = models.PositiveIntegerField(default=0, help_text="pairs of edits the judgements formed")
    hyperparameters = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, help_text="held-out accuracy, departures, win rate against the heuristic")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children",
        help_text="the version active when it was trained",
    )
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_seam_model"),
        ]

    @property
    def label(self) -> str:
        return f"seam-{self.pk}"

    @property
    def source(self) -> str:
        """``Edit.source`` of the edits the learned planner makes with this version."""
        return f"planner:{self.label}"

    def __str__(self) -> str:
        return f"{self.label}{' (active)' if self.is_active else ''}"


class Cycle(models.Model):
    """One turn of the loop: train a reward model, fine-tune the policy, propose comparisons.

    ``is_running`` is True from creation until the cycle is done or failed; a
    partial unique constraint on it lets at most one cycle run at a time.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        TRAINING_REWARD_MODEL = "training_reward_model", "training reward model"
        TRAINING_POLICY = "training_policy", "training policy"
        PROPOSING = "proposing", "proposing"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    status = models.CharField(max_length=30, choices=Status.choices, default=Status.QUEUED)
    is_running = models.BooleanField(default=True)
    progress = models.FloatField(default=0.0, help_text="0..1 over the whole cycle")
    log = models.TextField(blank=True)
    parameters = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    trigger = models.CharField(max_length=20, default="manual", help_text="manual, schedule, command or simulation")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    judgements_seen = models.PositiveBigIntegerField(
        default=0, help_text="highest judgement id when the cycle was created (new judgements arrive after it)"
    )
    reward_model_version = models.OneToOneField(
        RewardModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="cycle"
    )
    policy_version = models.OneToOneField(
        PolicyVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="cycle"
    )
    seam_model_version = models.OneToOneField(
        SeamModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="cycle"
    )
    celery_task_id = models.CharField(max_length=255, blank=True, help_text="task of the step running now")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="last sign of life of the running step")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["is_running"], condition=Q(is_running=True), name="one_running_cycle"),
            models.CheckConstraint(condition=Q(progress__gte=0.0, progress__lte=1.0), name="cycle_progress_0_1"),
        ]

    def __str__(self) -> str:
        return f"cycle {self.pk} ({self.status})"


class RetargetJob(models.Model):
    """One request to retarget a track (or a passage of it) to a duration, and what it made.

    The request is checked when the job is created (``rlhf.retarget.services.retarget_job_start``);
    the edits are made by a task.  ``results`` lists, per method, the stored edit and what the
    command and the page show: ``{"method", "edit_id", "source", "reward", "seam_seconds",
    "duration_seconds", "chosen_from"}`` (``chosen_from``: which best-of-N candidate won, else null).  A job that fails keeps its error and stores no half result: each
    edit is stored whole by ``annotations.services.edit_create`` or not at all.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    track = models.ForeignKey("annotations.Track", null=True, blank=True, on_delete=models.CASCADE,
                              related_name="retarget_jobs", help_text="empty until an uploaded file is ingested")
    track_upload = models.ForeignKey("annotations.TrackUpload", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+", help_text="an uploaded audio file, analysed by the job")
    upload_name = models.CharField(max_length=255, blank=True)
    target_seconds = models.FloatField()
    from_beat = models.PositiveIntegerField(null=True, blank=True, help_text="the passage asked for; empty: the whole track")
    to_beat = models.PositiveIntegerField(null=True, blank=True)
    start_beat = models.PositiveIntegerField(null=True, blank=True, help_text="the checked plan (editing.retarget)")
    n_beats = models.PositiveIntegerField(null=True, blank=True)
    target_beats = models.PositiveIntegerField(null=True, blank=True)
    methods = models.JSONField(default=list, help_text='e.g. ["best-of-8", "heuristic"]')
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=300, blank=True)
    results = models.JSONField(default=list)
    error = models.TextField(blank=True)
    comparison = models.ForeignKey("annotations.Comparison", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", help_text="the comparison made when the pair was sent to annotators")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="last sign of life while running "
                                        "(annotations.jobs)")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(progress__gte=0.0, progress__lte=1.0), name="retarget_progress_0_1"),
        ]

    def __str__(self) -> str:
        return f"retarget {self.pk} ({self.status})"
