"""Crafted text in every parameter and JSON string field the OpenAPI schema lists: a JSON 4xx naming it, never a 5xx.

The cases are generated from the schema the site serves (``/api/schema/``), so an operation,
a query parameter or a body field added later is covered without editing this file.  Each
text value is sent with a NUL byte and with a lone surrogate (and, where the schema says it
is a date, with dates far outside what a database column holds); each query parameter and
each path parameter gets the same crafted text.  A field the user's role may not send at
all is answered 403 before its body is read: every case is therefore sent as each role,
and at least one of them must get the refusal that names the field.

Not slow: it runs in the SQLite pass and in the PostgreSQL pass of ``scripts/test.sh``,
where a NUL byte reaching a query would be the 500 this guards against.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from django.test import Client
from drf_spectacular.generators import SchemaGenerator

from tests.annotations.factories import make_comparison, make_user

pytestmark = pytest.mark.django_db

ROLES = ("annotator", "researcher", "admin")
MARK = "\x01crafted\x01"  # stands for the crafted JSON text in a body built with json.dumps
NUL_JSON = '"a\\u0000b"'
LONE_SURROGATE_JSON = '"\\ud800"'
CRAFTED_JSON = {"nul": NUL_JSON, "surrogate": LONE_SURROGATE_JSON}
CRAFTED_QUERY = {"nul": "a%00b", "surrogate": "%ED%A0%80"}
FAR_DATES = {"date": ["9999-12-31", "0001-01-01"],
             "date-time": ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00%2B14:00"]}
LONG_TEXT = "u" * 300  # longer than any username or name column (150 and 255 characters)


def _resolve(node: dict, components: dict) -> dict:
    """The schema node behind ``$ref`` and single-item ``allOf`` (how drf-spectacular writes an enum field)."""
    while True:
        if "$ref" in node:
            node = components[node["$ref"].rsplit("/", 1)[1]]
        elif len(node.get("allOf", ())) == 1:
            node = node["allOf"][0]
        else:
            return node


def _is_text(node: dict) -> bool:
    return node.get("type") == "string" or (node.get("enum") and all(isinstance(v, str) for v in node["enum"]))


@dataclass(frozen=True)
class BodyField:
    """One JSON string of an operation's body: where it sits and the path the refusal names."""

    method: str
    path: str
    field: str  # as the refusal names it: "reason", "filters.x", "methods[0]"
    keys: tuple  # where to put the crafted text in the body: dict keys and list indices
    date_format: str | None

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path} {self.field}"


@dataclass(frozen=True)
class Parameter:
    method: str
    path: str
    name: str
    where: str  # "query" or "path"
    date_format: str | None

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path} {self.where} {self.name}"


def _body_fields(method: str, path: str, node: dict, components: dict, prefix: str = "",
                 keys: tuple = ()) -> list[BodyField]:
    node = _resolve(node, components)
    if _is_text(node):
        return [BodyField(method, path, prefix or "the body", keys, node.get("format"))]
    if node.get("type") == "array":
        return _body_fields(method, path, node.get("items", {}), components, f"{prefix}[0]", keys + (0,))
    if node.get("type") == "object" or "properties" in node:
        fields = []
        for name, child in node.get("properties", {}).items():
            fields += _body_fields(method, path, child, components, f"{prefix}.{name}" if prefix else name,
                                   keys + (name,))
        if node.get("additionalProperties") is not None and node.get("additionalProperties") is not False:
            # A free-form object: any key may come, and its value may be text.
            fields.append(BodyField(method, path, f"{prefix}.x" if prefix else "x", keys + ("x",), None))
        return fields
    return []


def _operations() -> tuple[list[BodyField], list[Parameter]]:
    """Every JSON string field and every query and path parameter of the schema the site serves."""
    spec = SchemaGenerator().get_schema(request=None, public=True)
    components = spec["components"]["schemas"]
    bodies, parameters = [], []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for p in operation.get("parameters", []):
                if p["in"] in ("query", "path"):
                    parameters.append(Parameter(method, path, p["name"], p["in"], p.get("schema", {}).get("format")))
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                bodies += _body_fields(method, path, content["application/json"]["schema"], components)
    return bodies, parameters


BODY_FIELDS, PARAMETERS = _operations()


def test_the_schema_gives_the_cases():
    """The generation finds the text the API takes (a schema change that hid them would empty this test)."""
    named = {str(f) for f in BODY_FIELDS} | {str(p) for p in PARAMETERS}
    for expected in ("POST /api/judgements/ comment", "POST /api/comparisons/{comparison_id}/skip/ reason",
                     "POST /api/exports/ filters.x", "POST /api/retarget/ methods[0]",
                     "GET /api/judgements/ query since", "GET /api/judgements/ query date",
                     "GET /api/exports/stream/ query proposed_by", "GET /api/exports/stream/card/ query date_to"):
        assert expected in named, sorted(named)


@pytest.fixture
def world(storage_root):
    """A user of each role and a comparison assigned to the annotator (so its skip reads its body)."""
    sessions = {}
    for role in ROLES:
        extra = {"is_staff": True, "is_superuser": True} if role == "admin" else {}
        client = Client(raise_request_exception=False)  # a server error is an answer here
        client.force_login(make_user(f"crafted-{role}", role=role, **extra))
        sessions[role] = client
    make_comparison()
    comparison_id = sessions["annotator"].get("/api/comparisons/next/").json()["comparison"]["id"]
    return sessions, comparison_id


def _url(path: str, comparison_id: int, *, replace: dict[str, str] | None = None) -> str:
    values = {"comparison_id": str(comparison_id), "id": "1", **(replace or {})}
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


def _send(client: Client, method: str, url: str, body: str | None = None):
    if method == "get":
        return client.get(url)
    return getattr(client, method)(url, body or "{}", content_type="application/json")


def _fill(keys: tuple, value) -> object:
    """The smallest JSON value that holds ``value`` at ``keys`` (dict keys and list indices 0)."""
    if not keys:
        return value
    inner = _fill(keys[1:], value)
    return [inner] if isinstance(keys[0], int) else {keys[0]: inner}


def _json_with(field: BodyField, crafted_json: str) -> str:
    return json.dumps(_fill(field.keys, MARK)).replace(json.dumps(MARK), crafted_json)


def _problems_of_body_field(sessions: dict, comparison_id: int, field: BodyField) -> list[str]:
    url = _url(field.path, comparison_id)
    problems = []

    def answers(value_json: str) -> list:
        found = []
        for role in ROLES:
            response = _send(sessions[role], field.method, url, _json_with(field, value_json))
            if response.status_code >= 500 or (response.status_code >= 400
                                               and response["Content-Type"] != "application/json"):
                problems.append(f"{field} = {value_json[:20]} as {role}: {response.status_code} "
                                f"{response.content[:200]!r}")
            elif response.status_code >= 400:
                found.append(response.json())
        return found

    for kind, crafted in CRAFTED_JSON.items():
        refusals = answers(crafted)
        if not any(a.get("code") == "invalid_text" and a.get("field") == field.field and field.field in a["detail"]
                   for a in refusals):
            problems.append(f"{field} with {kind}: no role's refusal names it: {refusals}")
    for value in FAR_DATES.get(field.date_format, []):
        if not any(field.field in json.dumps(a) for a in answers(json.dumps(value))):
            problems.append(f"{field} = {value}: not refused naming it")
    answers(json.dumps(LONG_TEXT))  # may be taken; never a server error
    return problems


def _problems_of_parameter(sessions: dict, comparison_id: int, parameter: Parameter) -> list[str]:
    problems: list[str] = []
    far_dates_named: dict[str, list[bool]] = {}
    for role, client in sessions.items():
        def send(value: str):
            if parameter.where == "query":
                url = f"{_url(parameter.path, comparison_id)}?{quote(parameter.name)}={value}"
            else:
                url = _url(parameter.path, comparison_id, replace={parameter.name: value})
            response = _send(client, parameter.method, url)
            if response.status_code >= 500 or (response.status_code >= 400
                                               and response["Content-Type"] != "application/json"):
                problems.append(f"{parameter} = {value[:20]} as {role}: {response.status_code} "
                                f"{response.content[:200]!r}")
                return None
            return response

        for kind, crafted in CRAFTED_QUERY.items():
            response = send(crafted)
            if response is None:
                continue
            if parameter.where == "path":
                # Ids are numbers: a crafted segment matches no route, or is refused; a JSON 4xx either way.
                if not 400 <= response.status_code < 500:
                    problems.append(f"{parameter} with {kind} as {role}: {response.status_code}")
            elif (response.status_code != 400 or response.json().get("code") != "invalid_text"
                  or response.json().get("field") != parameter.name):
                problems.append(f"{parameter} with {kind} as {role}: {response.status_code} {response.content[:200]!r}")
        if parameter.where == "query":
            for value in FAR_DATES.get(parameter.date_format, []):
                response = send(value)
                if response is not None and not 400 <= response.status_code < 500:
                    problems.append(f"{parameter} = {value} as {role}: {response.status_code}")
                elif response is not None and response.status_code != 403:
                    far_dates_named.setdefault(value, []).append(parameter.name in response.content.decode())
            send(LONG_TEXT)  # may be taken; never a server error
    for value in FAR_DATES.get(parameter.date_format, []) if parameter.where == "query" else []:
        if not any(far_dates_named.get(value, [])):  # a role that may use it must hear why, by name
            problems.append(f"{parameter} = {value}: no role's refusal names it")
    return problems


def test_every_json_string_field_refuses_crafted_text_naming_it_and_never_fails(world):
    """NUL and lone surrogate in each JSON string (and in a key of a free-form object), far dates in each
    date field: a JSON 4xx that names the field; a 300-character text: anything but a server error."""
    sessions, comparison_id = world
    problems = [p for field in BODY_FIELDS for p in _problems_of_body_field(sessions, comparison_id, field)]
    assert not problems, "\n".join(problems)


def test_every_parameter_refuses_crafted_text_naming_it_and_never_fails(world):
    """NUL and lone surrogate in each query parameter: 400 naming it, whatever the role; in each path
    parameter: a JSON 4xx; far dates in each date parameter: a JSON 4xx naming it; a 300-character
    text: anything but a server error."""
    sessions, comparison_id = world
    problems = [p for parameter in PARAMETERS for p in _problems_of_parameter(sessions, comparison_id, parameter)]
    assert not problems, "\n".join(problems)
