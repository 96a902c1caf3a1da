"""Schemathesis against the OpenAPI schema, on a live server, with a logged-in session for each role.

Every operation of the schema gets a fixed, small budget of generated requests
(valid and invalid ones) per role, so the whole test fits CI.  It passes when no
answer is a server error and every answer matches what the schema documents
(status, content type, body).
"""
from __future__ import annotations

import pytest
import requests
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.annotations.factories import make_comparison, make_judgement, make_track_with_audio, make_user

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 8
ROLES = ("annotator", "researcher", "admin")
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]


@pytest.fixture(params=ROLES)
def role_session(request, live_server, storage_root) -> requests.Session:
    """A requests session logged in as a user of the role, with the CSRF cookie and header DRF expects."""
    # Tracks with audio: a comparison's original passage is rendered from it when asked for.
    track = make_track_with_audio()
    make_judgement(make_user("other-ears", role="annotator"), make_comparison(track=track), choice="b", confidence=4)
    make_comparison(track=track)
    extra = {"is_staff": True, "is_superuser": True} if request.param == "admin" else {}
    client = Client()
    client.force_login(make_user(f"schema-{request.param}", role=request.param, **extra))
    client.get("/annotate/" if request.param != "researcher" else "/research/")  # sets the CSRF cookie
    session = requests.Session()
    for name in ("sessionid", "csrftoken"):
        session.cookies.set(name, client.cookies[name].value)
    session.headers["X-CSRFToken"] = client.cookies["csrftoken"].value
    session.headers["Referer"] = live_server.url + "/"
    return session


def _fuzz(operation, mode, *, base_url: str, session: requests.Session) -> None:
    """Send EXAMPLES_PER_OPERATION generated requests of one kind; a failed check raises with a curl to replay."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def send(case):
        case.call_and_validate(base_url=base_url, session=session, timeout=60, checks=CHECKS)

    send()


def test_api_answers_match_the_schema_and_never_fail(live_server, role_session):
    # The schema itself is behind login: fetched with the role's session.
    api = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json",
                                        cookies=role_session.cookies.get_dict(), timeout=60)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 10  # the schema really lists the API
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, base_url=live_server.url, session=role_session)
