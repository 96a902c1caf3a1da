"""Response headers the site adds itself (the CSP comes from django-csp, the rest from Django's SecurityMiddleware)."""
from __future__ import annotations

from django.conf import settings


class PermissionsPolicyMiddleware:
    """Sends ``settings.PERMISSIONS_POLICY``: browser features (camera, microphone, ...) no page uses are off."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = settings.PERMISSIONS_POLICY

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Permissions-Policy", self.policy)
        return response
