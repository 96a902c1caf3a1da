"""``manage.py invite_annotator USERNAME``: create (or confirm) an annotator account; a new password is printed once."""
from django.core.management.base import BaseCommand, CommandError

from annotations.invites import annotator_invite


class Command(BaseCommand):
    help = "Create a user in the annotator group with a random password printed once (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--reset-password", action="store_true",
                            help="give an existing user a fresh random password")

    def handle(self, *args, username: str, email: str, reset_password: bool, **options):
        try:
            invitation = annotator_invite(username=username, email=email, reset_password=reset_password)
        except ValueError as err:
            raise CommandError(str(err)) from err
        name = invitation.user.username
        if invitation.created:
            self.stdout.write(self.style.SUCCESS(f"created annotator {name}"))
        else:
            self.stdout.write(f"{name} is an annotator")
        if invitation.password is not None:
            self.stdout.write(f"password for {name} (shown once): {invitation.password}")
