"""The retarget API (``/api/retarget/``): the durations a track allows, start a job, poll it, send its pair
to the annotators."""
from django.urls import path

import annotations.converters  # noqa: F401  registers <id:...>

from rlhf.retarget import views as retarget_views

urlpatterns: list = [
    path("", retarget_views.RetargetListApi.as_view(), name="rlhf-retarget-list"),
    path("bounds/", retarget_views.RetargetBoundsApi.as_view(), name="rlhf-retarget-bounds"),
    path("<id:pk>/", retarget_views.RetargetDetailApi.as_view(), name="rlhf-retarget"),
    path("<id:pk>/send/", retarget_views.RetargetSendApi.as_view(), name="rlhf-retarget-send"),
]
