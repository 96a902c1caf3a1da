"""The landing page (sends each user to the parts of the studio their role uses) and the API's docs page."""
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from drf_spectacular.views import SpectacularSwaggerSplitView

from annotations import roles


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    return render(request, "home.html", {
        "is_annotator": roles.is_annotator(user),
        "is_researcher": roles.is_researcher(user),
        "is_admin": roles.is_admin(user),
    })


# The split view loads its start-up script from a URL, not inline, so the CSP needs no exception;
# the docs page sends visitors to the login page, the schema answers 403 to them.
_swagger_ui = login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema"))


def api_docs(request: HttpRequest) -> HttpResponse:
    """The API's docs (Swagger UI) for browsers; a client that takes only JSON gets JSON, as everywhere under /api/."""
    if not request.accepts("text/html"):
        return JsonResponse({"detail": "the API's docs are a page for browsers; the API's schema is /api/schema/",
                             "code": "not_acceptable"}, status=406)
    return _swagger_ui(request)
