"""REST API of this app (mounted at /api/)."""
from django.urls import path

import annotations.converters  # noqa: F401  registers <id:...>

from . import api

urlpatterns: list = [
    path("comparisons/next/", api.NextComparisonView.as_view(), name="api-comparison-next"),
    path("comparisons/<id:comparison_id>/skip/", api.ComparisonSkipView.as_view(), name="api-comparison-skip"),
    path("comparisons/<id:comparison_id>/original/", api.ComparisonOriginalView.as_view(),
         name="api-comparison-original"),
    path("judgements/", api.JudgementListCreateView.as_view(), name="api-judgements"),
    path("progress/", api.ProgressView.as_view(), name="api-progress"),
]

# Exports (admins): background jobs, their download, a direct stream.
from . import export_views  # noqa: E402

urlpatterns += [
    path("exports/", export_views.ExportJobListView.as_view(), name="api-exports"),
    path("exports/stream/", export_views.ExportStreamView.as_view(), name="api-export-stream"),
    path("exports/stream/card/", export_views.ExportStreamCardView.as_view(), name="api-export-stream-card"),
    path("exports/<id:pk>/", export_views.ExportJobDetailView.as_view(), name="api-export-detail"),
    path("exports/<id:pk>/download/", export_views.ExportJobDownloadView.as_view(), name="api-export-download"),
]
