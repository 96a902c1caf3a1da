"""Inviting annotators: the one service behind the admin action and ``manage.py invite_annotator``."""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from .roles import ANNOTATOR

PASSWORD_BYTES = 12


@dataclass(frozen=True)
class Invitation:
    """Who was invited; ``password`` is set only when a new password was made (show it once)."""

    user: object
    created: bool
    password: str | None


def annotator_invite(*, username: str, email: str = "", reset_password: bool = False) -> Invitation:
    """Make ``username`` an annotator, creating the account with a random password if it is new.

    Idempotent: inviting an existing annotator again changes nothing unless
    ``reset_password`` asks for a fresh password.

    Raises
    ------
    ValueError : empty username
    """
    username = username.strip()
    if not username:
        raise ValueError("an invitation needs a username")
    User = get_user_model()
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        password = None
        if created or reset_password:
            password = secrets.token_urlsafe(PASSWORD_BYTES)
            user.set_password(password)
            user.save(update_fields=["password"])
        user.groups.add(Group.objects.get_or_create(name=ANNOTATOR)[0])
    return Invitation(user=user, created=created, password=password)
