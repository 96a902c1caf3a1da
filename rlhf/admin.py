"""Back office for model versions: browse, inspect metrics, activate, roll back."""
from __future__ import annotations

from typing import Callable

from django.contrib import admin, messages

from annotations.errors import DomainError
from rlhf.models import RewardModelVersion, SeamModelVersion
from rlhf.versions import reward_model_activate, seam_model_activate


class VersionAdmin(admin.ModelAdmin):
    """A registered model version: read-only (versions are immutable), activated by an action."""

    exclude = ("judgement_ids",)
    actions = ["activate"]
    # The versions service that makes one version the active one (refusing with a DomainError).
    activate_service: Callable = staticmethod(lambda *, version: version)
    kind = "version"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name != "judgement_ids"]

    def has_add_permission(self, request) -> bool:
        return False  # versions come from training only

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # versions are immutable; activation is an action

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # cycles, policies and children name a version: it stays on record

    @admin.action(description="Activate the selected version")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "select exactly one version to activate", messages.ERROR)
            return
        try:
            version = self.activate_service(version=queryset.get())
        except DomainError as err:
            self.message_user(request, str(err), messages.ERROR)
            return
        self.message_user(request, f"{version.label} is now the active {self.kind}")


@admin.register(RewardModelVersion)
class RewardModelVersionAdmin(VersionAdmin):
    list_display = ("label", "is_active", "created_at", "n_judgements", "validation_accuracy", "baseline_accuracy",
                    "ece", "feature_version", "parent")
    list_filter = ("is_active", "feature_version")
    activate_service = staticmethod(reward_model_activate)
    kind = "reward model"

    @admin.display(description="accuracy")
    def validation_accuracy(self, obj: RewardModelVersion):
        return obj.metrics.get("accuracy")

    @admin.display(description="dense-only accuracy")
    def baseline_accuracy(self, obj: RewardModelVersion):
        return obj.metrics.get("baseline_accuracy")

    @admin.display(description="ECE")
    def ece(self, obj: RewardModelVersion):
        return obj.metrics.get("ece")


@admin.register(SeamModelVersion)
class SeamModelVersionAdmin(VersionAdmin):
    list_display = ("label", "is_active", "created_at", "n_judgements", "n_pairs", "holdout_accuracy", "departures",
                    "parent")
    list_filter = ("is_active", "feature_version")
    activate_service = staticmethod(seam_model_activate)
    kind = "seam model"

    @admin.display(description="held-out accuracy")
    def holdout_accuracy(self, obj: SeamModelVersion):
        return obj.metrics.get("holdout", {}).get("accuracy")

    @admin.display(description="departs on")
    def departures(self, obj: SeamModelVersion) -> str:
        d = obj.metrics.get("departures", {})
        return f"{d.get('departs', 0)} of {d.get('passages', 0)} passages"
