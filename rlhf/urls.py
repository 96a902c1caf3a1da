"""Pages of this app."""
from django.urls import path

app_name = "rlhf"
urlpatterns: list = []
