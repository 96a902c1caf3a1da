"""Training, registering and activating reward-model versions from judgements."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from django.urls import reverse

from annotations.models import Edit, Judgement
from editing.edit import MODEL_FEATURE_VERSION, N_MODEL_FEATURES
from rlhf import artifacts, versions
from rlhf.cycle import reward_services
from rlhf.models import RewardModelVersion
from rlhf.learning.configs import TrainingConfig
from rlhf.learning.reward_data import DatasetRefused
from rlhf.learning.reward_model import RewardModelConfig
from rlhf.evidence.simulate import annotators_simulate
from tests.annotations.factories import make_comparison, make_judgement, make_user
from tests.rlhf.demo_data import demo_comparisons, demo_tracks
from tests.rlhf.synthetic import synthetic_edits

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def synthetic_inputs(monkeypatch):
    """Edits without audio analysis: model inputs and dense scores come from random features."""
    def fake_inputs(edits):
        made, _ = synthetic_edits(np.random.default_rng(len(edits)), len(edits))
        return made

    monkeypatch.setattr(reward_services, "edit_inputs", fake_inputs)
    monkeypatch.setattr(reward_services, "dense_combined_scores", lambda edits: np.zeros(len(edits), np.float32))


def _active_version(storage_root) -> RewardModelVersion:
    (storage_root / "reward_models").mkdir(exist_ok=True)
    (storage_root / "reward_models" / "old.pt").write_bytes(b"x")
    return RewardModelVersion.objects.create(
        artifact="reward_models/old.pt", artifact_sha256="0" * 64, feature_version=MODEL_FEATURE_VERSION,
        n_features=N_MODEL_FEATURES, judgements_sha256="0" * 64, reward_mean=0.0, reward_std=1.0, is_active=True,
    )


def _judged_pairs(n: int, *, choice=lambda i: "ab"[i % 2], tracks: int = 2):
    annotator = make_user()
    comparisons = [make_comparison() for _ in range(n)]
    for i, c in enumerate(comparisons):
        make_judgement(annotator, c, choice=choice(i))
    return comparisons


@pytest.mark.parametrize(
    "n, choice, message",
    [
        (0, None, "empty"),
        (25, lambda i: "a", "one-sided: all 25 decided judgements chose edit A"),
        (6, lambda i: "ab"[i % 2], "6 compared pairs of edits, at least 20 needed"),
    ],
)
def test_refused_datasets_keep_the_active_version(storage_root, synthetic_inputs, n, choice, message):
    active = _active_version(storage_root)
    if n:
        _judged_pairs(n, choice=choice)
    with pytest.raises(DatasetRefused, match=message):
        reward_services.reward_model_train(config=TrainingConfig(min_pairs=20))
    assert list(RewardModelVersion.objects.values_list("pk", "is_active")) == [(active.pk, True)]
    assert sorted(p.name for p in (storage_root / "reward_models").iterdir()) == ["old.pt"]


def test_gold_items_and_unreliable_annotators_are_left_out(storage_root, synthetic_inputs):
    good, bad = make_user(), make_user()
    regular = [make_comparison() for _ in range(4)]
    gold = [make_comparison(is_gold=True, gold_answer="a") for _ in range(3)]
    for c in regular:
        make_judgement(good, c, choice="a")
        make_judgement(bad, c, choice="b")
    for c in gold:
        make_judgement(good, c, choice="a")
        make_judgement(bad, c, choice="b")
    data = reward_services.training_data_build(with_baseline=False)
    kept = set(Judgement.objects.filter(pk__in=data.judgement_ids).values_list("annotator_id", "comparison__is_gold"))
    assert kept == {(good.pk, False)}
    assert data.dropped_annotators == (bad.pk,)
    everyone = reward_services.training_data_build(include_gold=True, min_gold_accuracy=0, with_baseline=False)
    assert len(everyone.judgement_ids) == 14


def test_trained_version_registers_activates_and_rolls_back(storage_root, synthetic_inputs):
    _judged_pairs(30)
    tiny = dict(n_members=2, max_epochs=1, min_pairs=10)
    first = reward_services.reward_model_train(config=TrainingConfig(**tiny))
    second = reward_services.reward_model_train(config=TrainingConfig(seed=1, **tiny), warm_start=True)
    assert second.is_active and second.parent == first
    first.refresh_from_db()
    assert not first.is_active
    assert second.hyperparameters["warm_start"] is True and second.n_judgements == 30
    assert second.judgement_ids == sorted(Judgement.objects.values_list("pk", flat=True))
    assert (storage_root / second.artifact.name).exists()
    assert artifacts.file_sha256(storage_root / second.artifact.name) == second.artifact_sha256
    assert not list((storage_root / "tmp").iterdir())
    assert versions.reward_model_rollback() == first
    assert RewardModelVersion.objects.get(is_active=True) == first

    edits = list(Edit.objects.order_by("pk")[:5])
    rewards = reward_services.edit_rewards_predict(edits=edits)
    assert rewards.version == first and rewards.reward.shape == rewards.uncertainty.shape == (5,)
    assert np.all(np.abs(rewards.reward) <= 10) and np.all(rewards.uncertainty >= 0)


def test_activation_refuses_a_version_of_other_features(storage_root):
    version = _active_version(storage_root)
    RewardModelVersion.objects.filter(pk=version.pk).update(is_active=False, feature_version="beat-features-v0+edit-v0")
    version.refresh_from_db()
    with pytest.raises(versions.RewardServiceError, match=re.escape(MODEL_FEATURE_VERSION)) as err:
        versions.reward_model_activate(version=version)
    assert "beat-features-v0+edit-v0" in str(err.value)


def test_loss_plot_is_for_researchers_only(storage_root, client):
    version = _active_version(storage_root)
    RewardModelVersion.objects.filter(pk=version.pk).update(
        metrics={"curves": [{"train_loss": [0.6, 0.5], "val_loss": [0.62, 0.55], "best_epoch": 1}]})
    url = reverse("rlhf:reward-model-loss", args=[version.pk])
    client.force_login(make_user(role="annotator"))
    assert client.get(url).status_code == 403
    client.force_login(make_user(role="researcher"))
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")


@pytest.mark.slow
def test_learns_the_simulated_listeners_preference_from_demo_audio(storage_root, tmp_path, settings):
    """Real demo audio, rendered retargets, simulated annotators (default listener, 10 % noise): the model learns
    the listener's preference well above chance and at least as well as the dense rewards, calibrated.

    On this data the dense score is a strong proxy for the default listener (both reward continuity
    across seams): measured 0.787 against 0.777 here, and ``evaluate_loop`` finds the same on held-out
    tracks (README, "Does feedback help?").  The issue's +5 points over the dense score is not met.
    """
    settings.ANNOTATION_GOLD_RATE = 0.0
    settings.ANNOTATION_REPEAT_RATE = 0.0
    tracks = demo_tracks(tmp_path / "demo")
    demo_comparisons(tracks, edits_per_excerpt=6, excerpt_step=2, seed=0)
    report = annotators_simulate(n_annotators=3, seed=0)
    assert report.n_random > 0
    version = reward_services.reward_model_train(config=TrainingConfig(seed=0, max_epochs=6, patience=2))
    m = version.metrics
    print({k: m[k] for k in ("accuracy", "baseline_accuracy", "ece", "ece_choices", "temperature", "lapse", "n_pairs",
                             "train_seconds")})
    assert m["accuracy"] >= 0.75
    assert m["accuracy"] >= m["baseline_accuracy"] - 0.02
    assert version.is_active and version.metrics["curves"][0]["val_loss"]
    # Calibrated (temperature and lapse) on held-out training tracks only; measured on the validation tracks.
    # On about 190 validation pairs in five bins the ECE's sampling error is a few points: 0.041 was
    # measured with the queue serving one track at a time, 0.066 once it mixes tracks (the same
    # comparisons, answered by other simulated annotators in another order, so another noise draw).
    assert m["ece"] <= 0.075
    # Against the raw share of answers the model is off by design (it is trained on confidence-shaped
    # targets, see rlhf.learning.reward_training.evaluate), and on about 90 validation pairs five bins carry a
    # sampling error of a few points (measured 0.059, where ``ece`` is 0.041): a sanity bound only.
    assert m["ece_choices"] <= 0.1


KILLED_SCRIPT = textwrap.dedent("""
    import os, sys, time
    import django
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    from django.conf import settings
    settings.ANNOTATION_GOLD_RATE = 0.0
    settings.ANNOTATION_REPEAT_RATE = 0.0
    from tests.rlhf.demo_data import demo_tracks, demo_comparisons
    from rlhf.evidence.simulate import annotators_simulate
    from rlhf.cycle.reward_services import reward_model_train
    from rlhf.learning.configs import TrainingConfig
    tracks = demo_tracks(__import__("pathlib").Path(sys.argv[1]), n_tracks=2)
    demo_comparisons(tracks, edits_per_excerpt=3, excerpt_step=8, seed=0)
    annotators_simulate(n_annotators=3, seed=0)
    def progress(stage, done, total):
        print("STAGE", stage, flush=True)
        if stage.startswith("member 1/3 epoch 1") and done == 1:
            time.sleep(600)  # the parent kills us here, mid-training
    reward_model_train(config=TrainingConfig(min_pairs=5, batch_pairs=8), progress=progress)
""")


@pytest.mark.slow
def test_killed_training_leaves_no_version_and_no_artifact(tmp_path):
    storage = tmp_path / "storage"
    db = tmp_path / "studio.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "STORAGE_ROOT": str(storage),
           "DJANGO_SETTINGS_MODULE": "feedback_site.settings", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SCRIPT, str(tmp_path / "demo")], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        if line.startswith("STAGE member 1/3 epoch 1") or time.monotonic() > deadline:
            break
    else:
        pytest.fail(f"training never started (exit {proc.wait()})")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from rlhf_rewardmodelversion").fetchone() == (0,)
    assert not (storage / "reward_models").exists() or not any((storage / "reward_models").iterdir())


def test_with_few_tracks_the_reward_model_splits_by_excerpt_and_selects_on_its_own_pairs(storage_root,
                                                                                       synthetic_inputs):
    from tests.annotations.factories import make_edit, make_track

    annotator = make_user()
    tracks = [make_track(n_beats=512) for _ in range(2)]
    for i in range(40):
        track, start = tracks[i % 2], 16 * (i // 2)
        cut = list(range(start, start + 8)) + list(range(start + 12, start + 16))
        comparison = make_comparison(edit_a=make_edit(track, excerpt_start=start),
                                     edit_b=make_edit(track, cut, excerpt_start=start))
        make_judgement(annotator, comparison, choice="ab"[i % 2])
    version = reward_services.reward_model_train(config=TrainingConfig(n_members=2, max_epochs=2, min_pairs=10))
    m = version.metrics
    # Two tracks: a track-wise split would train on one; excerpts keep both tracks in training.
    assert m["split_unit"] == "excerpt"
    assert m["n_selection_pairs"] > 0 and m["n_validation_pairs"] > 0 and m["n_train_pairs"] > 0
    assert (m["n_train_pairs"] + m["n_calibration_pairs"] + m["n_selection_pairs"] + m["n_validation_pairs"]
            == version.n_comparisons)
    assert set(m["reward_scale"]) == {"learned", "dense"}


def test_train_ensemble_keeps_training_selection_and_validation_groups_apart():
    from rlhf.learning.reward_training import train_ensemble
    from tests.rlhf.synthetic import synthetic_dataset

    dataset = synthetic_dataset(0, n_judgements=160, n_tracks=12)
    result = train_ensemble(dataset, TrainingConfig(n_members=2, max_epochs=3, min_pairs=10))
    sets = [result.train_rows, result.calibration_rows, result.selection_rows, result.validation_rows]
    groups = [set(dataset.group[rows].tolist()) for rows in sets]
    assert all(rows.size for rows in sets)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not groups[i] & groups[j]
    # Early stopping looked at the selection pairs only: one loss per epoch trained, before stopping.
    assert all(len(c.val_loss) == len(c.train_loss) for c in result.curves)


def test_the_policy_reward_is_guarded_and_on_the_dense_scale():
    from rlhf.learning.configs import PolicyError
    from rlhf.learning.learned_reward import EnsembleReward
    from rlhf.learning.reward_training import train_ensemble
    from tests.rlhf.synthetic import synthetic_dataset

    dataset = synthetic_dataset(1, n_judgements=120, n_tracks=8)
    ensemble = train_ensemble(dataset, TrainingConfig(n_members=3, max_epochs=2, min_pairs=10)).ensemble
    ensemble.set_normalization(list(dataset.edits))

    class Episode:
        def __init__(self, edit):
            self.track, self.edit = None, edit

    plain = EnsembleReward(ensemble)
    on_dense = EnsembleReward(ensemble, scale=(0.6, 0.1))
    guarded = EnsembleReward(ensemble, pessimism=1.0)
    inputs = list(dataset.edits)
    for reward in (plain, on_dense, guarded):
        reward._inputs = staticmethod(lambda items: [edit for _, edit in items])
    episodes = [Episode(e) for e in inputs]
    z = plain(episodes)
    assert z.mean() == pytest.approx(0.0, abs=1e-3) and z.std() == pytest.approx(1.0, abs=1e-2)
    scaled = on_dense(episodes)
    assert scaled.mean() == pytest.approx(0.6, abs=1e-3) and scaled.std() == pytest.approx(0.1, abs=1e-3)
    spread = ensemble.member_rewards(inputs).std(0)
    np.testing.assert_allclose(plain(episodes) - guarded(episodes), spread / ensemble.reward_std, rtol=1e-4, atol=1e-5)
    with pytest.raises(PolicyError, match="pessimism must be at least 0"):
        EnsembleReward(ensemble, pessimism=-1.0)
