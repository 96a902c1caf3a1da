"""Pages of this app."""
from django.urls import path

import annotations.converters  # noqa: F401  registers <id:...>

from rlhf import views

app_name = "rlhf"
urlpatterns: list = [
    path("reward-models/<id:pk>/loss.png", views.reward_model_loss_plot, name="reward-model-loss"),
]

from rlhf.cycle import views as cycle_views  # noqa: E402  (the cycle pages live in their own module)

urlpatterns += [
    path("", cycle_views.research_home, name="home"),
    path("cycles/start/", cycle_views.cycle_start_view, name="cycle-start"),
    path("cycles/<id:pk>/", cycle_views.cycle_detail, name="cycle-detail"),
    path("cycles/<id:pk>/status.json", cycle_views.cycle_status_json, name="cycle-status"),
    path("cycles/<id:pk>/comparisons/", cycle_views.cycle_comparisons, name="cycle-comparisons"),
    path("policies/<id:pk>/activate/", cycle_views.policy_activate_view, name="policy-activate"),
    path("policies/rollback/", cycle_views.policy_rollback_view, name="policy-rollback"),
    path("reward-models/<id:pk>/activate/", cycle_views.reward_model_activate_view, name="reward-model-activate"),
    path("reward-models/rollback/", cycle_views.reward_model_rollback_view, name="reward-model-rollback"),
    path("plots/<slug:name>.png", cycle_views.cycle_plot, name="cycle-plot"),
]
