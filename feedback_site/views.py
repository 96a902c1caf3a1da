"""The landing page: sends each user to the parts of the studio their role uses."""
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from annotations import roles


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    return render(request, "home.html", {
        "is_annotator": roles.is_annotator(user),
        "is_researcher": roles.is_researcher(user),
        "is_admin": roles.is_admin(user),
    })
