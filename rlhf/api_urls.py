"""REST API of this app."""
from django.urls import path

urlpatterns: list = []
