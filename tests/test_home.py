"""The landing page shows each role its own way in."""
import re
from xml.etree import ElementTree

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders

from tests.annotations.factories import make_user

pytestmark = pytest.mark.django_db


def test_anonymous_is_sent_to_log_in(client):
    response = client.get("/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("role,shown,hidden", [
    ("annotator", ["/annotate/"], ["/research/", "/admin/"]),
    ("researcher", ["/research/", "/annotate/quality/"], ['href="/annotate/"', "/admin/"]),
    (None, ["no role yet"], ["/research/", 'href="/annotate/"']),
])
def test_each_role_sees_its_links(client, role, shown, hidden):
    client.force_login(make_user(role=role))
    page = client.get("/").content.decode()
    for text in shown:
        assert text in page
    for text in hidden:
        assert text not in page


def test_pages_carry_the_studios_svg_favicon(client):
    client.force_login(make_user())
    page = client.get("/").content.decode()
    href = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page).group(1)
    # The file the link names, found as collectstatic finds it (the browser tests fetch it through the server).
    path = finders.find(href.removeprefix(settings.STATIC_URL))
    assert path is not None and ElementTree.parse(path).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert href in client.get("/no-such-page/").content.decode()  # the plain error pages too
