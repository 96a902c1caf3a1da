"""The three roles, as Django groups, and the checks that pages and endpoints use.

One check per role: pages use the decorators, the REST API the permission classes below;
both read the same ``is_*`` functions.
"""
from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

ANNOTATOR = "annotator"
RESEARCHER = "researcher"
ADMIN = "admin"
ROLES = (ANNOTATOR, RESEARCHER, ADMIN)


def has_role(user, role: str) -> bool:
    """True when ``user`` is logged in and holds ``role`` (superusers hold every role)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return user.groups.filter(name=role).exists()


def is_annotator(user) -> bool:
    return has_role(user, ANNOTATOR)


def is_researcher(user) -> bool:
    return has_role(user, RESEARCHER) or has_role(user, ADMIN)


def is_admin(user) -> bool:
    return has_role(user, ADMIN)


def researcher_required(view):
    """Page decorator: log in first, then researchers (and admins) only, BEFORE the view looks anything up.

    Checking the role before any object lookup means an id answers the same to
    a non-researcher whether or not it exists (no probing of version ids).
    """

    @login_required
    @wraps(view)
    def checked(request, *args, **kwargs):
        if not is_researcher(request.user):
            raise PermissionDenied("researchers only")
        return view(request, *args, **kwargs)

    return checked


# --------------------------------------------------------------------------- REST API permissions

class IsAnnotator(BasePermission):
    message = "only annotators can do this"

    def has_permission(self, request, view) -> bool:
        return is_annotator(request.user)


class IsAnnotatorOrResearcher(BasePermission):
    message = "only annotators, researchers and admins can do this"

    def has_permission(self, request, view) -> bool:
        return is_annotator(request.user) or is_researcher(request.user)


class IsResearcher(BasePermission):
    message = "researchers and admins only"

    def has_permission(self, request, view) -> bool:
        return is_researcher(request.user)


class IsAdmin(BasePermission):
    message = "admins only"

    def has_permission(self, request, view) -> bool:
        return is_admin(request.user)
