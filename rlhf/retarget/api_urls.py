"""The retarget API (``/api/retarget/``): start a job, poll it, send its pair to the annotators."""
from django.urls import path

import annotations.converters  # noqa: F401  registers <id:...>

from rlhf.retarget import views as retarget_views

urlpatterns: list = [
    path("", retarget_views.RetargetListApi.as_view(), name="rlhf-retarget-list"),
    path("<id:pk>/", retarget_views.RetargetDetailApi.as_view(), name="rlhf-retarget"),
    path("<id:pk>/send/", retarget_views.RetargetSendApi.as_view(), name="rlhf-retarget-send"),
]
