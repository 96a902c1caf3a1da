"""The landing page shows each role its own way in."""
import pytest

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
