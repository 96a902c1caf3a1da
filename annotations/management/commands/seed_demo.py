"""manage.py seed_demo : demo users (printed) and baseline comparisons for every track, for a first run."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from tqdm import tqdm

from annotations.models import Comparison, Track
from annotations.roles import ADMIN, ANNOTATOR, RESEARCHER
from annotations.services import baseline_comparisons_create

DEMO_USERS = (
    ("demo-admin", "demo-admin-pass", (ADMIN, RESEARCHER, ANNOTATOR), True),
    ("demo-researcher", "demo-researcher-pass", (RESEARCHER,), False),
    ("demo-annotator", "demo-annotator-pass", (ANNOTATOR,), False),
)


class Command(BaseCommand):
    help = "Create demo logins and propose baseline comparisons for tracks that have none. Never use in production."

    def add_arguments(self, parser):
        parser.add_argument("--excerpts", type=int, default=5, help="excerpts per track (default %(default)s)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--hidden-references", action="store_true",
                            help="also a hidden reference per excerpt (the heuristic's edit against itself)")

    def handle(self, *args, excerpts, seed, hidden_references, **options):
        User = get_user_model()
        for username, password, roles, staff in DEMO_USERS:
            user, _ = User.objects.get_or_create(username=username)
            user.set_password(password)
            user.is_staff = staff
            user.is_superuser = staff
            user.save()
            user.groups.set(Group.objects.filter(name__in=roles))
        tracks = Track.objects.exclude(id__in=Comparison.objects.values("track_id"))
        total = 0
        for track in tqdm(list(tracks), desc="propose", unit="track", disable=options["verbosity"] == 0):
            total += len(baseline_comparisons_create(track=track, n_excerpts=excerpts, seed=seed + track.pk,
                                                     proposed_by="demo",
                                                     with_hidden_reference=hidden_references))
        self.stdout.write(f"{total} comparisons proposed")
        self.stdout.write("Demo logins (local use only):")
        for username, password, roles, _ in DEMO_USERS:
            self.stdout.write(f"  {username:16s} password {password:22s} roles: {', '.join(roles)}")
