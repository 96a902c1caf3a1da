"""Pages of this app (mounted at /annotate/)."""
from django.urls import path

import annotations.converters  # noqa: F401  registers <id:...>

from . import views

app_name = "annotations"
urlpatterns: list = [
    path("", views.annotate, name="annotate"),
    path("audio/<id:edit_id>/", views.audio, name="audio"),
    path("original/<id:comparison_id>/", views.original_audio, name="original-audio"),
]

# Quality control (researchers).
from . import quality_views  # noqa: E402

urlpatterns += [
    path("quality/", quality_views.quality_page, name="quality"),
    path("quality/<str:plot>.png", quality_views.quality_plot, name="quality-plot"),
]
