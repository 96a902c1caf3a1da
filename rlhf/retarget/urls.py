"""The retarget page (``/retarget/``) and its downloads."""
from django.urls import path

import annotations.converters  # noqa: F401  registers <id:...>

from rlhf.retarget import views as retarget_views

urlpatterns: list = [
    path("", retarget_views.retarget_page, name="retarget-page"),
    path("jobs/<id:pk>/results/<int:index>.<str:fmt>", retarget_views.retarget_audio, name="rlhf-retarget-audio"),
]
