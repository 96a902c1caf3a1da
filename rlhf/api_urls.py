"""REST API of this app."""
from django.urls import path

from rlhf import cycle_views

urlpatterns: list = [
    path("cycles/", cycle_views.CycleListApi.as_view(), name="rlhf-cycles"),
    path("cycles/<int:pk>/", cycle_views.CycleDetailApi.as_view(), name="rlhf-cycle"),
]
