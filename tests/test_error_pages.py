"""What a browser and a JSON client see when a request goes wrong, or reaches the API from a browser.

Under ``/api/`` a JSON client always gets JSON (errors as ``{"detail", "code"}``) and a browser
never a server error; elsewhere a missing page and a refused one are the site's own plain pages.
"""
from __future__ import annotations

import pytest
from django.db import transaction
from django.test import Client

from tests.annotations.factories import make_comparison, make_judgement, make_user
from tests.test_authorization_matrix import MATRIX, ROLES, _client, _fill, world  # noqa: F401  (world: a fixture)

pytestmark = pytest.mark.django_db

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
JSON_ACCEPT = "application/json"


@pytest.mark.parametrize("role", ["annotator", "researcher"])
def test_the_judgement_list_opened_in_a_browser_is_a_page_of_judgements(role):
    make_judgement(make_user(), make_comparison(), comment="the second seam stumbles")
    client = Client()
    client.force_login(make_user(role=role))
    response = client.get("/api/judgements/", HTTP_ACCEPT=BROWSER_ACCEPT)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    if role == "researcher":  # researchers read every judgement; annotators their own (none yet)
        assert "the second seam stumbles" in html
    else:
        assert '"count": 0' in html.replace("&quot;", '"')
        assert 'name="confidence"' in html  # the form to submit one, with the submit's fields


def test_every_api_url_answers_a_json_client_in_json_and_a_browser_without_a_server_error(world):
    ids, users, _ = world
    wrong = []
    api_routes = [route for route in MATRIX if route.startswith("api/")]
    assert len(api_routes) > 10
    for route in api_routes:
        path = _fill(route, ids)
        for method in MATRIX[route]:
            for role in ROLES:
                with transaction.atomic():
                    client = _client(users[role])
                    as_json = getattr(client, method)(path, HTTP_ACCEPT=JSON_ACCEPT)
                    in_browser = getattr(client, method)(path, HTTP_ACCEPT=BROWSER_ACCEPT)
                    transaction.set_rollback(True)
                kind = as_json.get("Content-Type", "")
                if "json" not in kind:
                    wrong.append(f"{method.upper()} {path} as {role}, JSON: {as_json.status_code} {kind}")
                elif as_json.status_code >= 400 and set(as_json.json()) < {"detail", "code"}:
                    wrong.append(f"{method.upper()} {path} as {role}, JSON: {as_json.status_code} {as_json.json()}")
                if in_browser.status_code >= 500:
                    wrong.append(f"{method.upper()} {path} as {role}, browser: {in_browser.status_code}")
    assert wrong == []


@pytest.mark.parametrize("path", ["/api/no-such-thing/", "/api/judgements/987654/", "/api/docs/"])
def test_a_json_client_gets_json_at_api_urls_that_are_no_json_endpoint(path):
    client = Client()
    client.force_login(make_user())
    response = client.get(path, HTTP_ACCEPT=JSON_ACCEPT)
    assert response["Content-Type"] == "application/json"
    assert response.status_code in (404, 406) and response.json()["code"] in ("not_found", "not_acceptable")


def test_a_browser_still_gets_the_api_docs_page():
    client = Client()
    client.force_login(make_user())
    response = client.get("/api/docs/", HTTP_ACCEPT=BROWSER_ACCEPT)
    assert response.status_code == 200 and "swagger-ui" in response.content.decode()


def _plain_page(response) -> str:
    html = response.content.decode()
    assert response["Content-Type"].startswith("text/html")
    assert "css/site.css" in html and 'href="/"' in html  # the site's look, and a way back
    assert "Traceback" not in html and "Django" not in html
    return html


def test_a_missing_page_is_the_sites_not_found_page():
    client = Client()
    client.force_login(make_user())
    response = client.get("/no-such-page/", HTTP_ACCEPT=BROWSER_ACCEPT)
    assert response.status_code == 404
    html = _plain_page(response)
    assert "<h1>Not found</h1>" in html and "<code>/no-such-page/</code>" in html


def test_a_page_of_another_role_is_the_sites_not_allowed_page_with_the_reason():
    client = Client()
    client.force_login(make_user(role="researcher"))
    response = client.get("/annotate/", HTTP_ACCEPT=BROWSER_ACCEPT)
    assert response.status_code == 403
    html = _plain_page(response)
    assert "<h1>Not allowed</h1>" in html and "Only annotators can annotate." in html
