"""The pure reward model: targets, refusals, shapes, determinism, checkpoints, learning on synthetic data."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from editing.edit import MODEL_FEATURE_VERSION, N_MODEL_FEATURES
from rlhf.learning import reward_model as rm
from rlhf.learning import configs, reward_data, reward_training
from tests.rlhf.synthetic import synthetic_dataset, synthetic_edits

TINY = rm.RewardModelConfig(d_model=32, n_heads=2, n_layers=1, ff_dim=64)
FAST = configs.TrainingConfig(n_members=2, max_epochs=2, patience=1, batch_pairs=32, min_pairs=10)


def test_default_architecture_is_about_2_6_million_parameters():
    assert 2.3e6 <= rm.count_parameters() <= 2.8e6


def test_confidence_shapes_the_target():
    assert reward_data.confidence_target("a", 1) == pytest.approx(0.6)
    assert reward_data.confidence_target("a", 5) == pytest.approx(0.98)
    assert reward_data.confidence_target("b", 5) == pytest.approx(0.02)
    assert reward_data.confidence_target("tie", 5) == 0.5
    with pytest.raises(reward_data.RewardModelError, match="confidence 7"):
        reward_data.confidence_target("a", 7)


def test_judgements_of_one_pair_are_combined_and_swapped_repeats_join_them():
    edits, _ = synthetic_edits(np.random.default_rng(0), 3)
    ds = reward_data.dataset_from_judgements(edits, [(0, 0, 1, "a", 5), (0, 0, 1, "b", 1), (0, 1, 0, "b", 5), (1, 2, 1, "tie", 3)])
    assert ds.n_pairs == 2
    row = int(np.flatnonzero((ds.pair_a == 0) & (ds.pair_b == 1))[0])
    assert ds.weight[row] == 3
    assert ds.target[row] == pytest.approx((0.98 + 0.4 + 0.98) / 3)
    assert ds.share_a[row] == pytest.approx(2 / 3)
    assert (ds.n_chose_first, ds.n_chose_second) == (1, 2)


@pytest.mark.parametrize(
    "judgements, message",
    [
        ([], "empty"),
        ([(g, 2 * g, 2 * g + 1, "a", 3) for g in range(12)], "one-sided: all 12 decided judgements chose edit A"),
        ([(g, 2 * g, 2 * g + 1, "tie", 3) for g in range(12)], "every judgement is a tie"),
        ([(g, 2 * g, 2 * g + 1, "ab"[g % 2], 3) for g in range(5)], "5 compared pairs of edits, at least 10 needed"),
    ],
)
def test_unusable_datasets_are_refused_with_the_reason(judgements, message):
    edits, _ = synthetic_edits(np.random.default_rng(0), 24)
    ds = reward_data.dataset_from_judgements(edits, judgements)
    with pytest.raises(reward_data.DatasetRefused, match=message):
        reward_training.train_ensemble(ds, FAST, model_config=TINY)


def test_split_keeps_every_track_on_one_side():
    groups = np.repeat(np.arange(10), 7)
    train, val = reward_data.split_by_group(groups, validation_fraction=0.2, seed=3)
    assert set(groups[train]).isdisjoint(groups[val])
    assert train.size + val.size == groups.size and val.size >= 0.2 * groups.size


def test_rewards_are_bounded_and_padding_does_not_change_them():
    edits, _ = synthetic_edits(np.random.default_rng(1), 5, min_beats=16, max_beats=48)
    net = rm.RewardNet(TINY, np.zeros(N_MODEL_FEATURES), np.ones(N_MODEL_FEATURES)).eval()
    ens = rm.RewardEnsemble(members=[net], config=TINY)
    alone = np.array([ens.member_rewards([e])[0, 0] for e in edits])
    batched = ens.member_rewards(edits)[0]
    np.testing.assert_allclose(alone, batched, atol=2e-2)  # bf16 autocast: equal to a few 1e-3
    big = reward_data.EditInput(edits[0].features * 1e4, edits[0].actions)
    assert np.all(np.abs(ens.member_rewards([big])) <= rm.REWARD_BOUND)


def test_training_is_deterministic_from_the_seed():
    ds = synthetic_dataset(0, n_judgements=120)
    a = reward_training.train_ensemble(ds, FAST, model_config=TINY)
    b = reward_training.train_ensemble(ds, FAST, model_config=TINY)
    assert a.curves == b.curves
    for ma, mb in zip(a.ensemble.members, b.ensemble.members):
        for (name, ta), tb in zip(ma.state_dict().items(), mb.state_dict().values()):
            assert torch.equal(ta, tb), name


def test_learns_a_hidden_preference_from_noisy_judgements():
    ds = synthetic_dataset(0, n_judgements=900, per_comparison=1, noise=0.1)
    result = reward_training.train_ensemble(ds, configs.TrainingConfig(n_members=1, max_epochs=6, patience=2), model_config=TINY)
    assert result.evaluation.accuracy >= 0.8
    assert result.evaluation.baseline_accuracy == pytest.approx(0.5, abs=0.15)  # random scores as the baseline
    assert result.curves[0].val_loss[result.curves[0].best_epoch] == min(result.curves[0].val_loss)


def test_checkpoint_round_trips_exactly(tmp_path):
    ds = synthetic_dataset(1, n_judgements=80)
    ens = reward_training.train_ensemble(ds, FAST, model_config=TINY).ensemble
    ens.set_normalization(list(ds.edits[:20]))
    rm.save_checkpoint(ens, tmp_path / "rm.pt")
    loaded = rm.load_checkpoint(tmp_path / "rm.pt")
    assert loaded.config == ens.config and loaded.feature_version == MODEL_FEATURE_VERSION
    assert (loaded.reward_mean, loaded.reward_std) == (ens.reward_mean, ens.reward_std)
    for ma, mb in zip(ens.members, loaded.members):
        for ta, tb in zip(ma.state_dict().values(), mb.state_dict().values()):
            assert torch.equal(ta.cpu(), tb.cpu())
    assert (loaded.temperature, loaded.lapse) == (ens.temperature, ens.lapse)
    np.testing.assert_array_equal(loaded.member_rewards(list(ds.edits)), ens.member_rewards(list(ds.edits)))


def test_checkpoint_of_other_features_is_refused_naming_both(tmp_path, monkeypatch):
    ds = synthetic_dataset(2, n_judgements=60)
    ens = reward_training.train_ensemble(ds, FAST, model_config=TINY).ensemble
    ens.feature_version = "beat-features-v0+edit-v0"
    rm.save_checkpoint(ens, tmp_path / "old.pt")
    with pytest.raises(rm.CheckpointMismatch) as err:
        rm.load_checkpoint(tmp_path / "old.pt")
    assert "beat-features-v0+edit-v0" in str(err.value) and MODEL_FEATURE_VERSION in str(err.value)


def test_checkpoint_of_the_nine_action_set_is_refused(tmp_path):
    # Written before LOOP_PHRASE: no action-set version and a nine-row action embedding.
    ds = synthetic_dataset(2, n_judgements=60)
    ens = reward_training.train_ensemble(ds, FAST, model_config=TINY).ensemble
    rm.save_checkpoint(ens, tmp_path / "rm.pt")
    payload = torch.load(tmp_path / "rm.pt", weights_only=True)
    del payload["action_set_version"]
    payload["config"]["n_actions"] = 9
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(rm.CheckpointMismatch, match="trained on action set 'actions-v1', this code has "
                                                    "'actions-v2-loop-phrase' \\(10 actions\\); retrain"):
        rm.load_checkpoint(tmp_path / "old.pt")


def test_edit_of_wrong_width_is_refused():
    with pytest.raises(reward_data.RewardModelError, match=f"expected \\(n_output_beats, {N_MODEL_FEATURES}\\)"):
        reward_data.EditInput(np.zeros((4, 121), np.float32), np.zeros(4, np.int64))


def test_ece_is_zero_when_predictions_match_agreement_and_grows_with_overconfidence():
    share = np.array([0.9, 0.1, 0.7, 0.3])
    w = np.full(4, 3.0)
    assert reward_training.expected_calibration_error(np.array([0.9, 0.1, 0.7, 0.3]), share, w) == pytest.approx(0.0)
    assert reward_training.expected_calibration_error(np.array([0.99, 0.01, 0.99, 0.01]), share, w) == pytest.approx(0.19, abs=1e-6)


class KnownRewards:
    """Stands in for an ensemble whose rewards are known: one member, reward = the edit's hidden quality."""

    def __init__(self, quality: np.ndarray):
        self.quality = quality

    def member_rewards(self, edits):
        return self.quality[None, :].astype(np.float32)


def _lapsing_judgements(seed: int, n_pairs: int, *, lapse: float, temperature: float):
    """Judges who answer at random a ``lapse`` share of the time, else Boltzmann-rationally; three answers per pair."""
    rng = np.random.default_rng(seed)
    edits, quality = synthetic_edits(rng, 2 * n_pairs, min_beats=2, max_beats=2)
    quality = 3 * quality / quality.std()
    rows = []
    for c in range(n_pairs):
        a, b = 2 * c, 2 * c + 1
        p_a = lapse / 2 + (1 - lapse) / (1 + np.exp(-(quality[a] - quality[b]) / temperature))
        for _ in range(3):
            rows.append((c % 5, a, b, "a" if rng.random() < p_a else "b", 5))
    ds = reward_data.dataset_from_judgements(edits, rows)
    # Targets as the judges' real agreement, so the test isolates the link between reward and probability.
    return KnownRewards(quality), replace(ds, target=ds.share_a)


def test_calibration_fits_judges_who_sometimes_answer_at_random():
    """Temperature alone cannot match judges with a 20 % random-answer rate; temperature and lapse do."""
    ensemble, fit_on = _lapsing_judgements(0, 1500, lapse=0.2, temperature=0.5)
    check_rewards, check_on = _lapsing_judgements(1, 1500, lapse=0.2, temperature=0.5)
    calibration = reward_training.fit_calibration(ensemble, fit_on)
    assert calibration.lapse == pytest.approx(0.2, abs=0.05)
    assert calibration.temperature == pytest.approx(0.5, rel=0.35)

    def ece(temperature, lapse):
        p = rm._pair_probability(check_rewards.member_rewards(None), check_on.pair_a, check_on.pair_b, temperature, lapse)
        return reward_training.expected_calibration_error(p, check_on.share_a, check_on.weight)

    temperature_only = min(reward_training._TEMPERATURES, key=lambda t: reward_training._weighted_bt_loss(
        rm._pair_probability(ensemble.member_rewards(None), fit_on.pair_a, fit_on.pair_b, t), fit_on))
    assert ece(calibration.temperature, calibration.lapse) <= 0.03
    assert ece(temperature_only, 0.0) >= 2 * ece(calibration.temperature, calibration.lapse)


def test_scoring_batches_cover_every_edit_once_and_pad_little():
    rng = np.random.default_rng(0)
    rollout = np.clip(np.round(rng.gamma(1.3, 9.0, size=106)).astype(int), 1, 64)  # a PPO rollout's edits
    batches = rm._length_batches_for_scoring(rollout, 256)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(rollout.size))
    assert len(batches) <= 8  # not one forward call per distinct length (there are ~30)
    padded = sum(len(b) * rollout[b].max() for b in batches)
    assert padded <= 1.5 * rollout.sum()
    same = rm._length_batches_for_scoring(np.full(1000, 32), 256)
    assert [len(b) for b in same] == [256, 256, 256, 232]


def test_scoring_follows_weight_changes_and_matches_the_training_forward_pass():
    edits, _ = synthetic_edits(np.random.default_rng(3), 12, min_beats=4, max_beats=30)
    torch.manual_seed(0)
    net = rm.RewardNet(TINY, np.zeros(N_MODEL_FEATURES), np.ones(N_MODEL_FEATURES)).eval()
    ens = rm.RewardEnsemble(members=[net], config=TINY)
    feats, acts, padding = rm.pad_batch(edits, torch.device("cpu"))
    with torch.no_grad():
        reference = net(feats, acts, padding).numpy()
    np.testing.assert_allclose(ens.member_rewards(edits)[0], reference, atol=2e-2)  # bf16 encoder: a few 1e-3
    before = ens.member_rewards(edits)
    torch.manual_seed(1)
    net.load_state_dict(rm.RewardNet(TINY, np.zeros(N_MODEL_FEATURES), np.ones(N_MODEL_FEATURES)).state_dict())
    assert not np.allclose(ens.member_rewards(edits), before)  # new weights are scored, not a stale copy


def test_concurrent_scoring_forwards_give_the_same_bits_as_one_at_a_time(monkeypatch):
    # Rollout-like lengths (several batches, padded and unpadded) and three members of the default size
    # (whose kernels' results depend on the thread count, unlike TINY's): with two torch threads the
    # (batch, member) forwards run two at a time, each exactly as it would run alone.
    edits, _ = synthetic_edits(np.random.default_rng(5), 40, min_beats=1, max_beats=64)
    config = rm.RewardModelConfig()
    torch.manual_seed(0)
    members = [rm.RewardNet(config, np.zeros(N_MODEL_FEATURES), np.ones(N_MODEL_FEATURES)).eval() for _ in range(3)]
    ens = rm.RewardEnsemble(members=members, config=config)
    threads_seen = []
    score = rm._ScoringCopies.score

    def recording_score(self, *args, **kwargs):
        threads_seen.append(torch.get_num_threads())
        return score(self, *args, **kwargs)

    monkeypatch.setattr(rm._ScoringCopies, "score", recording_score)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert rm._concurrent_forwards(torch.device("cpu"), torch.get_num_threads(), 9) == 2
        together = ens.member_rewards(edits, batch_size=16)
        assert torch.get_num_threads() == 2  # the caller's setting is left as it was
        monkeypatch.setattr(rm, "_concurrent_forwards", lambda *args: 1)
        one_by_one = ens.member_rewards(edits, batch_size=16)
    finally:
        torch.set_num_threads(before)
    assert together.shape == (3, 40) and np.isfinite(together).all()
    np.testing.assert_array_equal(together, one_by_one)
    # Every forward, in a worker thread or not, ran with the caller's two threads (the kernels' bits can
    # depend on the thread count, so a worker left at its default would score differently elsewhere).
    assert len(threads_seen) > 6 and set(threads_seen) == {2}
    assert rm._concurrent_forwards(torch.device("cpu"), 1, 9) == 1  # one thread asked for: one forward at a time
