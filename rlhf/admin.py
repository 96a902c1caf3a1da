"""Back office for model versions: browse, inspect metrics, activate, roll back."""
from __future__ import annotations

from django.contrib import admin, messages

from rlhf.models import RewardModelVersion, SeamModelVersion
from rlhf.versions import RewardServiceError, SeamServiceError, reward_model_activate, seam_model_activate


@admin.register(RewardModelVersion)
class RewardModelVersionAdmin(admin.ModelAdmin):
    list_display = ("label", "is_active", "created_at", "n_judgements", "validation_accuracy", "baseline_accuracy",
                    "ece", "feature_version", "parent")
    list_filter = ("is_active", "feature_version")
    readonly_fields = [f.name for f in RewardModelVersion._meta.fields if f.name != "judgement_ids"]
    exclude = ("judgement_ids",)
    actions = ["activate"]

    def has_add_permission(self, request) -> bool:
        return False  # versions come from training only

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # versions are immutable; activation is an action

    @admin.display(description="accuracy")
    def validation_accuracy(self, obj: RewardModelVersion):
        return obj.metrics.get("accuracy")

    @admin.display(description="dense-only accuracy")
    def baseline_accuracy(self, obj: RewardModelVersion):
        return obj.metrics.get("baseline_accuracy")

    @admin.display(description="ECE")
    def ece(self, obj: RewardModelVersion):
        return obj.metrics.get("ece")

    @admin.action(description="Activate the selected version")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "select exactly one version to activate", messages.ERROR)
            return
        try:
            version = reward_model_activate(version=queryset.get())
        except RewardServiceError as err:
            self.message_user(request, str(err), messages.ERROR)
            return
        self.message_user(request, f"{version.label} is now the active reward model")


@admin.register(SeamModelVersion)
class SeamModelVersionAdmin(admin.ModelAdmin):
    list_display = ("label", "is_active", "created_at", "n_judgements", "n_pairs", "holdout_accuracy", "departures",
                    "parent")
    list_filter = ("is_active", "feature_version")
    readonly_fields = [f.name for f in SeamModelVersion._meta.fields if f.name != "judgement_ids"]
    exclude = ("judgement_ids",)
    actions = ["activate"]

    def has_add_permission(self, request) -> bool:
        return False  # versions come from training only

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # versions are immutable; activation is an action

    @admin.display(description="held-out accuracy")
    def holdout_accuracy(self, obj: SeamModelVersion):
        return obj.metrics.get("holdout", {}).get("accuracy")

    @admin.display(description="departs on")
    def departures(self, obj: SeamModelVersion) -> str:
        d = obj.metrics.get("departures", {})
        return f"{d.get('departs', 0)} of {d.get('passages', 0)} passages"

    @admin.action(description="Activate the selected version")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "select exactly one version to activate", messages.ERROR)
            return
        try:
            version = seam_model_activate(version=queryset.get())
        except SeamServiceError as err:
            self.message_user(request, str(err), messages.ERROR)
            return
        self.message_user(request, f"{version.label} is now the active seam model")
