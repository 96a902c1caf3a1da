"""REST API of this app."""
from django.urls import path

import annotations.converters  # noqa: F401  registers <id:...>

from rlhf.cycle import views as cycle_views

urlpatterns: list = [
    path("cycles/", cycle_views.CycleListApi.as_view(), name="rlhf-cycles"),
    path("cycles/preflight/", cycle_views.CyclePreflightApi.as_view(), name="rlhf-cycle-preflight"),
    path("cycles/<id:pk>/", cycle_views.CycleDetailApi.as_view(), name="rlhf-cycle"),
]
