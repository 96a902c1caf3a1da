"""rlhf/cycle/seam_services.py and the learned retarget method: versions from judgements, and their refusals."""
from __future__ import annotations

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from annotations.models import Edit
from annotations.services import track_ingest
from editing.demo import write_demo_corpus
from rlhf import artifacts
from rlhf.cycle.seam_services import SeamData, seam_model_holdout, seam_model_load, seam_model_train
from rlhf.learning.configs import SeamTrainingConfig
from rlhf.learning.seam_model import N_SEAM_FEATURES, SeamPairs
from rlhf.evidence.simulate import AnnotatorModel, annotators_simulate
from rlhf.models import SeamModelVersion
from rlhf.retarget.services import retarget_default_methods
from rlhf.versions import SeamServiceError, seam_model_activate, seam_model_active
from tests.rlhf.demo_data import demo_comparisons

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_track(storage_root, tmp_path):
    (path,) = write_demo_corpus(tmp_path / "corpus", n_tracks=1)
    return track_ingest(path=path)[0]


def test_a_seam_model_without_judgements_is_registered_and_says_it_plans_the_heuristic(demo_track):
    version = seam_model_train(activate=True)
    assert seam_model_active() == version and version.n_judgements == 0
    assert version.metrics["is_zero"] and "plans the heuristic's edit" in version.metrics["note"]
    assert version.metrics["holdout"] == {"n_pairs": 0, "reason": "0 track(s) judged, 4 needed to hold some out"}
    assert (artifacts.storage_root() / version.artifact.name).is_file()
    assert seam_model_load(version).is_zero


def _seam_data(rng: np.random.Generator, tracks: np.ndarray, retarget: np.ndarray) -> SeamData:
    """Judged pairs on ``tracks`` (one row each) that mostly agree with the heuristic's cost."""
    n = tracks.size
    heuristic_a, heuristic_b = rng.random(n), rng.random(n)
    target = np.where(rng.random(n) < 0.8, heuristic_a < heuristic_b, heuristic_a > heuristic_b).astype(np.float64)
    pairs = SeamPairs(rng.normal(size=(n, N_SEAM_FEATURES)), rng.normal(size=(n, N_SEAM_FEATURES)), heuristic_a,
                      heuristic_b, target, np.ones(n), tracks.astype(np.int64))
    return SeamData(pairs=pairs, tracks=tracks.astype(np.int64), retarget=retarget, edits=(), judgement_ids=(),
                    contexts={})


def test_the_held_out_score_leaves_out_pairs_sent_for_retarget_requests():
    tracks = np.repeat(np.arange(1, 9), 30)
    plain = _seam_data(np.random.default_rng(0), tracks, np.zeros(tracks.size, dtype=bool))
    config = SeamTrainingConfig(n_members=2)
    before = seam_model_holdout(plain, config)
    held = np.array(before["held_out_tracks"])
    assert before["n_pairs"] == np.isin(tracks, held).sum()

    # Users' requests on the held-out tracks, answered against the heuristic's cost every time.
    extra_tracks = np.repeat(held, 15)
    extra = _seam_data(np.random.default_rng(1), extra_tracks, np.ones(extra_tracks.size, dtype=bool))
    extra.pairs.target[:] = (extra.pairs.heuristic_a > extra.pairs.heuristic_b).astype(np.float64)
    both = SeamData(
        pairs=SeamPairs(*(np.concatenate([getattr(plain.pairs, f), getattr(extra.pairs, f)]) for f in (
            "phi_a", "phi_b", "heuristic_a", "heuristic_b", "target", "weight", "group"))),
        tracks=np.concatenate([plain.tracks, extra.tracks]), retarget=np.concatenate([plain.retarget, extra.retarget]),
        edits=(), judgement_ids=(), contexts={})
    assert seam_model_holdout(both, config) == before


def test_learned_retarget_with_no_judgements_makes_the_heuristic_edit(demo_track, tmp_path, capsys):
    version = seam_model_train(activate=True)
    target = str(round(0.7 * demo_track.duration_seconds, 1))
    call_command("retarget", str(demo_track.pk), duration=target, method="heuristic", out=str(tmp_path / "h.wav"))
    call_command("retarget", str(demo_track.pk), duration=target, method="learned", out=str(tmp_path / "l.wav"))
    # Identical edits are stored once: the learned planner's edit is the heuristic's, reused.
    assert Edit.objects.count() == 1
    assert (tmp_path / "l.wav").read_bytes() == (tmp_path / "h.wav").read_bytes()
    assert "learned" in capsys.readouterr().out
    assert version.source.startswith("planner:seam-")


def test_learned_retarget_refuses_without_a_seam_model_or_with_a_corrupt_one(demo_track, tmp_path):
    target = str(round(0.7 * demo_track.duration_seconds, 1))
    with pytest.raises(CommandError, match="no active seam model yet"):
        call_command("retarget", str(demo_track.pk), duration=target, method="learned", out=str(tmp_path / "a.wav"))
    version = seam_model_train(activate=True)
    (artifacts.storage_root() / version.artifact.name).write_text('{"format": "seam-model-v1", "members_w": [[1')
    with pytest.raises(CommandError, match=f"{version.label}: its file .* does not match"):
        call_command("retarget", str(demo_track.pk), duration=target, method="learned", out=str(tmp_path / "b.wav"))
    with pytest.raises(SeamServiceError, match=version.label):
        seam_model_load(version)
    # The heuristic still works.
    call_command("retarget", str(demo_track.pk), duration=target, method="heuristic", out=str(tmp_path / "c.wav"))
    assert (tmp_path / "c.wav").is_file()


def test_a_version_for_other_seam_features_cannot_be_activated(demo_track):
    version = seam_model_train(activate=False)
    SeamModelVersion.objects.filter(pk=version.pk).update(feature_version="seam-features-v0")
    version.refresh_from_db()
    with pytest.raises(SeamServiceError, match="seam-features-v0"):
        seam_model_activate(version=version)


def test_the_default_method_says_why_it_is_not_the_learned_planner(demo_track):
    defaults = retarget_default_methods()
    assert defaults.methods == ("heuristic",)
    assert "no seam model is active yet" in defaults.reason
    seam_model_train(activate=True)
    assert "has no judged pairs against the heuristic yet" in retarget_default_methods().reason


@pytest.mark.slow
def test_a_seam_model_trained_on_judged_demo_comparisons_is_a_complete_version(storage_root, tmp_path):
    from tests.rlhf.demo_data import demo_tracks

    tracks = demo_tracks(tmp_path / "corpus", n_tracks=4)
    comparisons = demo_comparisons(tracks, edits_per_excerpt=3, excerpt_step=16, seed=0, required_judgements=1)
    annotators_simulate(n_annotators=2, model=AnnotatorModel(), seed=0)
    version = seam_model_train(activate=False)
    assert version.n_judgements > 0 and version.n_pairs > 0 and len(comparisons) > 0
    holdout = version.metrics["holdout"]
    assert holdout["n_pairs"] > 0 and 0.0 <= holdout["accuracy"] <= 1.0
    assert holdout["ci95"][0] <= holdout["accuracy"] <= holdout["ci95"][1]
    assert set(holdout["held_out_tracks"]) <= {t.pk for t in tracks}
    model = seam_model_load(version)
    assert model.n_pairs == version.n_pairs


def test_an_admin_activates_a_seam_model_and_is_told_why_a_foreign_one_cannot_be(demo_track):
    from django.contrib.auth import get_user_model
    from django.test import Client

    from tests.annotations.factories import PASSWORD

    first = seam_model_train(activate=True)
    second = seam_model_train(activate=False)
    boss = get_user_model().objects.create_superuser("boss", password=PASSWORD)
    web = Client()
    web.login(username=boss.username, password=PASSWORD)
    url = "/admin/rlhf/seammodelversion/"
    r = web.post(url, {"action": "activate", "_selected_action": [second.pk]}, follow=True)
    assert r.status_code == 200 and f"{second.label} is now the active seam model" in r.content.decode().lower()
    assert seam_model_active() == second
    SeamModelVersion.objects.filter(pk=first.pk).update(feature_version="seam-features-v0")
    r = web.post(url, {"action": "activate", "_selected_action": [first.pk]}, follow=True)
    assert "seam-features-v0" in r.content.decode() and seam_model_active() == second
    assert web.get(f"{url}{second.pk}/change/").status_code == 200  # read-only, still viewable
