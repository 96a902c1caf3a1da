"""Export: rows and counts match the database under every filter; the three formats agree row for row;
the command, the API (admins only), background jobs and the admin action all produce the same dataset."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone as dt_timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from annotations import export
from annotations.models import ExportJob, Judgement
from annotations.selectors import ExportFilterError, ExportFilters
from tests.annotations.factories import PASSWORD, make_comparison, make_edit, make_judgement, make_track, make_user

pytestmark = pytest.mark.django_db

MAY_1 = datetime(2024, 5, 1, 12, 0, tzinfo=dt_timezone.utc)
MAY_2 = datetime(2024, 5, 2, 9, 30, tzinfo=dt_timezone.utc)
MAY_3 = datetime(2024, 5, 3, 18, 0, tzinfo=dt_timezone.utc)


@pytest.fixture
def data(storage_root):
    """Two tracks, three sources, a gold item; alice is reliable, bob fails gold, carol judges little."""
    t1, t2 = make_track(title="Song one"), make_track(title="Song, two \"quoted\"")
    v1 = make_edit(t1, range(16), source="policy:v1")
    rnd = make_edit(t1, [*range(4), *range(8, 16)], source="baseline:random")
    v2 = make_edit(t2, range(16), source="policy:v2")
    cut = make_edit(t2, [*range(8), *range(12, 16)], source="baseline:bar_cut")
    c1 = make_comparison(edit_a=v1, edit_b=rnd, proposed_by="demo", predicted_preference=0.7)
    c2 = make_comparison(edit_a=v2, edit_b=cut, proposed_by="cycle 1")
    gold = make_comparison(edit_a=rnd, edit_b=v1, proposed_by="demo", is_gold=True, gold_answer="b")
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    make_judgement(alice, c1, choice="a", confidence=5, created_at=MAY_1, seconds_a=12.5, switches=4)
    make_judgement(bob, c1, choice="tie", confidence=2, created_at=MAY_2, left_is_a=False)
    make_judgement(carol, c1, choice="b", confidence=3, created_at=MAY_3)
    make_judgement(alice, c2, choice="b", confidence=4, created_at=MAY_2, decision_seconds=7.25,
                   original_heard=True)
    make_judgement(bob, c2, choice="b", confidence=1, created_at=MAY_3)
    make_judgement(alice, gold, choice="b", confidence=5, created_at=MAY_1)
    make_judgement(bob, gold, choice="a", confidence=5, created_at=MAY_1)
    return {"alice": alice, "bob": bob, "carol": carol, "c1": c1, "c2": c2, "gold": gold, "v1": v1, "rnd": rnd}


def export_ids(tmp_path: Path, filters: ExportFilters) -> list[int]:
    result = export.export_to_file(filters=filters, fmt="jsonl", path=tmp_path / "out.jsonl")
    ids = [json.loads(line)["judgement_id"] for line in result.path.read_text().splitlines()]
    assert result.n_rows == len(ids) == result.card["counts"]["rows"]
    return ids


def db_ids(**lookups) -> list[int]:
    return list(Judgement.objects.filter(**lookups).order_by("id").values_list("id", flat=True))


def test_every_filter_matches_the_database(data, tmp_path):
    alice, bob = data["alice"], data["bob"]
    cases = [
        ({}, {}),
        ({"date_from": "2024-05-02"}, {"created_at__gte": datetime(2024, 5, 2, tzinfo=dt_timezone.utc)}),
        ({"date_to": "2024-05-02"}, {"created_at__lt": datetime(2024, 5, 3, tzinfo=dt_timezone.utc)}),
        ({"annotators": [alice.pk, bob.pk]}, {"annotator__in": [alice, bob]}),
        ({"proposed_by": "cycle 1"}, {"comparison__proposed_by": "cycle 1"}),
        ({"edit_sources": ["policy:v2"]}, {"comparison": data["c2"]}),
        ({"min_confidence": 4}, {"confidence__gte": 4}),
        ({"exclude_gold": "true"}, {"comparison__is_gold": False}),
    ]
    for given, lookups in cases:
        expected = db_ids(**lookups)
        assert expected, given  # every case keeps something, so a filter that drops all is caught
        assert export_ids(tmp_path, ExportFilters.parse(given)) == expected, given


def test_gold_accuracy_threshold_drops_the_unreliable_annotator_only(data, tmp_path):
    result = export.export_to_file(
        filters=ExportFilters.parse({"min_gold_accuracy": 0.5}), fmt="jsonl", path=tmp_path / "x.jsonl"
    )
    ids = [json.loads(line)["judgement_id"] for line in result.path.read_text().splitlines()]
    # bob failed his only gold item; carol has none, so nothing is known against her and she stays.
    assert ids == list(Judgement.objects.exclude(annotator=data["bob"]).order_by("id").values_list("id", flat=True))
    assert result.card["excluded_annotators_low_gold_accuracy"] == [data["bob"].pk]


def test_rows_carry_the_comparison_the_choice_and_what_was_shown(data, tmp_path):
    path = export.export_to_file(filters=ExportFilters(), fmt="jsonl", path=tmp_path / "p.jsonl").path
    rows = {r["judgement_id"]: r for r in map(json.loads, path.read_text().splitlines())}
    c1, v1, rnd = data["c1"], data["v1"], data["rnd"]
    first = rows[Judgement.objects.get(annotator=data["alice"], comparison=c1).pk]
    assert first["track_id"] == c1.track_id and first["track_title"] == "Song one"
    assert (first["edit_a_id"], first["edit_a_source"], first["edit_a_audio"]) == (v1.pk, "policy:v1", v1.audio.name)
    assert first["edit_b_actions"] == rnd.actions and first["edit_b_source"] == "baseline:random"
    assert (first["chosen_edit_id"], first["rejected_edit_id"], first["tie"]) == (v1.pk, rnd.pk, False)
    assert (first["confidence"], first["seconds_a"], first["switches"]) == (5, 12.5, 4)
    assert (first["left_edit_id"], first["left_side"]) == (v1.pk, "a")
    assert first["predicted_preference"] == 0.7 and first["created_at"].startswith("2024-05-01T12:00")
    tie = rows[Judgement.objects.get(annotator=data["bob"], comparison=c1).pk]
    assert tie["tie"] is True and tie["choice"] == "tie"
    assert (tie["chosen_edit_id"], tie["rejected_edit_id"]) == (v1.pk, rnd.pk)  # A/B order for a tie
    assert (tie["left_edit_id"], tie["left_side"]) == (rnd.pk, "b")
    chose_b = rows[Judgement.objects.get(annotator=data["carol"], comparison=c1).pk]
    assert (chose_b["chosen_edit_id"], chose_b["rejected_edit_id"]) == (rnd.pk, v1.pk)


def test_every_format_says_whether_the_original_was_heard(data, tmp_path):
    heard = Judgement.objects.get(annotator=data["alice"], comparison=data["c2"]).pk
    paths = {fmt: export.export_to_file(filters=ExportFilters(), fmt=fmt, path=tmp_path / f"p.{fmt}").path
             for fmt in export.FORMATS}
    with paths["csv"].open(newline="") as fh:
        from_csv = {int(r["judgement_id"]): r["original_heard"] for r in csv.DictReader(fh)}
    from_jsonl = {r["judgement_id"]: r["original_heard"] for r in map(json.loads, paths["jsonl"].read_text().splitlines())}
    from_parquet = dict(zip(*pq.read_table(paths["parquet"], columns=["judgement_id", "original_heard"])
                            .to_pydict().values()))
    assert from_jsonl == from_parquet == {pk: pk == heard for pk in Judgement.objects.values_list("pk", flat=True)}
    assert from_csv == {pk: "true" if value else "false" for pk, value in from_jsonl.items()}
    assert "original_heard" in json.loads(export.card_path_for(paths["jsonl"]).read_text())["columns"]


def test_jsonl_csv_and_parquet_agree_row_for_row(data, tmp_path):
    filters = ExportFilters.parse({"exclude_gold": True})
    results = {fmt: export.export_to_file(filters=filters, fmt=fmt, path=tmp_path / f"prefs.{fmt}", chunk_size=2)
               for fmt in export.FORMATS}
    jsonl = [json.loads(line) for line in results["jsonl"].path.read_text().splitlines()]
    with results["csv"].path.open(newline="") as fh:
        from_csv = [export.decode_csv_row(record) for record in csv.DictReader(fh)]
    table = pq.read_table(results["parquet"].path)
    assert table.schema.metadata[b"schema_version"] == export.SCHEMA_VERSION.encode()
    from_parquet = table.to_pylist()
    assert len(jsonl) == len(from_csv) == len(from_parquet) == Judgement.objects.filter(comparison__is_gold=False).count()
    for j, c, p in zip(jsonl, from_csv, from_parquet):
        for row in (c, p):
            row["created_at"] = row["created_at"].isoformat()
        assert j == c == p
    for result in results.values():
        assert result.card_path == tmp_path / "prefs.card.json"


def test_card_counts_agreement_and_filters(data, tmp_path):
    result = export.export_to_file(filters=ExportFilters.parse({"min_confidence": 2}), fmt="csv",
                                   path=tmp_path / "prefs.csv")
    card = json.loads(result.card_path.read_text())
    kept = Judgement.objects.filter(confidence__gte=2)
    assert card["schema_version"] == export.SCHEMA_VERSION and card["filters"] == {"min_confidence": 2}
    assert card["counts"]["rows"] == kept.count()
    assert card["counts"]["comparisons"] == kept.values("comparison").distinct().count()
    assert card["counts"]["annotators"] == kept.values("annotator").distinct().count()
    assert card["counts"]["choices"] == {c: kept.filter(choice=c).count() for c in ("a", "tie", "b")}
    from annotations import quality, selectors

    expected_alpha = quality.quality_report(selectors.judgement_rows_for_quality(kept)).alpha
    assert card["agreement"]["krippendorff_alpha"] == pytest.approx(expected_alpha)
    assert card["agreement"]["level_of_measurement"] == "ordinal"


def test_bad_filters_are_refused_by_name():
    with pytest.raises(ExportFilterError, match="min_confidence"):
        ExportFilters.parse({"min_confidence": "6"})
    with pytest.raises(ExportFilterError, match="date_from"):
        ExportFilters.parse({"date_from": "yesterday"})
    with pytest.raises(ExportFilterError, match="colour"):
        ExportFilters.parse({"colour": "red"})


def test_command_writes_file_and_card_with_a_progress_bar(data, tmp_path):
    out, err = io.StringIO(), io.StringIO()
    target = tmp_path / "nested" / "prefs.parquet"
    call_command("export_preferences", str(target), "--min-confidence", "3", "--proposed-by", "demo",
                 "--chunk-size", "2", stdout=out, stderr=err)
    expected = db_ids(confidence__gte=3, comparison__proposed_by="demo")
    assert pq.read_table(target).column("judgement_id").to_pylist() == expected
    assert "100%" in err.getvalue() and f"{len(expected)}/{len(expected)}" in err.getvalue()
    assert f"wrote {len(expected)} rows" in out.getvalue()
    assert sorted(p.name for p in target.parent.iterdir()) == ["prefs.card.json", "prefs.parquet"]  # no temp left
    with pytest.raises(CommandError, match="format 'txt'"):
        call_command("export_preferences", str(tmp_path / "prefs.txt"), stdout=out, stderr=err)


# --- API ---------------------------------------------------------------------------------------------------


def login(client, user) -> None:
    assert client.login(username=user.username, password=PASSWORD)


def test_export_api_refuses_anonymous_annotators_and_researchers(client, data):
    urls = ["/api/exports/stream/?format=jsonl", "/api/exports/stream/card/"]
    for url in urls:
        assert client.get(url).status_code in (401, 403)
    assert client.post("/api/exports/", {"format": "jsonl"}, content_type="application/json").status_code in (401, 403)
    for user in (data["alice"], make_user("rita", role="researcher")):
        login(client, user)
        for url in urls:
            assert client.get(url).status_code == 403
        assert client.post("/api/exports/", {"format": "jsonl"}, content_type="application/json").status_code == 403
    assert not ExportJob.objects.exists()


def test_background_export_finishes_and_the_admin_downloads_it(client, data, django_capture_on_commit_callbacks):
    admin = make_user("ada", role="admin")
    login(client, admin)
    with django_capture_on_commit_callbacks(execute=True) as queued:
        created = client.post("/api/exports/", {"format": "csv", "filters": {"exclude_gold": True}},
                              content_type="application/json")
    assert len(queued) == 1  # the job is queued once, when its row is committed
    assert created.status_code == 201, created.content
    job = created.json()
    status = client.get(f"/api/exports/{job['id']}/").json()
    assert status["status"] == "done" and status["n_rows"] == Judgement.objects.filter(comparison__is_gold=False).count()
    assert status["card"]["filters"] == {"exclude_gold": True}
    download = client.get(status["download_url"])
    assert download.status_code == 200
    body = b"".join(download.streaming_content).decode()
    records = list(csv.DictReader(io.StringIO(body)))
    assert [int(r["judgement_id"]) for r in records] == db_ids(comparison__is_gold=False)
    assert ExportJob.objects.get(pk=job["id"]).requested_by == admin


def test_api_refuses_bad_requests_with_clear_errors(client, data):
    login(client, make_user("ada", role="admin"))
    bad_filter = client.post("/api/exports/", {"format": "jsonl", "filters": {"min_confidence": 9}},
                             content_type="application/json")
    assert bad_filter.status_code == 400 and "min_confidence" in bad_filter.json()["detail"]
    assert client.post("/api/exports/", {"format": "xml"}, content_type="application/json").status_code == 400
    parquet_stream = client.get("/api/exports/stream/?format=parquet")
    assert parquet_stream.status_code == 400 and "parquet" in parquet_stream.json()["detail"]
    assert client.get("/api/exports/9999/").status_code == 404


def test_streamed_export_and_its_card(client, data):
    login(client, make_user("ada", role="admin"))
    response = client.get(f"/api/exports/stream/?format=jsonl&annotators={data['alice'].pk}")
    assert response.status_code == 200 and response["X-Schema-Version"] == export.SCHEMA_VERSION
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [r["judgement_id"] for r in rows] == db_ids(annotator=data["alice"])
    assert "/api/exports/stream/card/?" in response["Link"]
    card = client.get(f"/api/exports/stream/card/?annotators={data['alice'].pk}").json()
    assert card["counts"]["rows"] == len(rows) and card["filters"] == {"annotators": [data["alice"].pk]}


def test_admin_action_exports_the_selection(client, data, django_capture_on_commit_callbacks):
    admin = make_user("root", role="admin", is_staff=True, is_superuser=True)
    login(client, admin)
    chosen = db_ids(annotator=data["alice"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/annotations/judgement/",
                               {"action": "export_jsonl", "_selected_action": [str(i) for i in chosen]}, follow=True)
    assert response.status_code == 200
    job = ExportJob.objects.get()
    assert job.status == "done" and job.n_rows == len(chosen) and job.requested_by == admin
    assert "status and download" in response.content.decode()
    page = client.get(f"/admin/annotations/exportjob/{job.pk}/change/").content.decode()
    assert f"/api/exports/{job.pk}/download/" in page
    lines = b"".join(client.get(f"/api/exports/{job.pk}/download/").streaming_content).decode().splitlines()
    assert [json.loads(line)["judgement_id"] for line in lines] == chosen


def test_an_export_job_is_queued_only_once_its_row_is_committed(data, django_capture_on_commit_callbacks):
    admin = make_user("ada", role="admin")
    with django_capture_on_commit_callbacks() as queued:
        with transaction.atomic():
            export.export_job_start(requested_by=admin, fmt="jsonl", filters=ExportFilters())
            transaction.set_rollback(True)
    assert queued == [] and not ExportJob.objects.exists()
    with django_capture_on_commit_callbacks(execute=True) as queued:
        job = export.export_job_start(requested_by=admin, fmt="jsonl", filters=ExportFilters())
        assert ExportJob.objects.get(pk=job.pk).status == ExportJob.Status.QUEUED
    assert len(queued) == 1
    job.refresh_from_db()
    assert job.status == ExportJob.Status.DONE and job.n_rows == Judgement.objects.count()
