"""Retargeting in use: manage.py retarget, the job service behind the page and the API, and their refusals.

Real audio end to end: a generated demo track and a real recording (tests/data, CC BY-SA, mono
22.05 kHz and stereo 44.1 kHz), ingested, retargeted, rendered and written; the result is checked
by ear's proxies: it comes back at the source's sample rate, channels and sample format, opens and
closes like the source (its first and last seconds are the source's), and lasts the duration asked
for, within a beat.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from django.core.management import CommandError, call_command

from annotations.models import Comparison, Edit, Track
from annotations.services import track_ingest, track_load_analysis, track_load_native
from editing.demo import write_demo_corpus
from editing.env import EnvConfig
from editing.retarget import RetargetError, parse_duration
from rlhf.models import RetargetJob
from rlhf.retarget.run import retarget_job_run
from rlhf.retarget.services import (
    RetargetServiceError, method_parse, retarget_bounds, retarget_job_send, retarget_job_start, retarget_plan,
)

pytestmark = pytest.mark.django_db

REAL_CLIP = Path(__file__).resolve().parents[1] / "data" / "caribbean-excerpt.ogg"
STEREO_CLIP = Path(__file__).resolve().parents[1] / "data" / "caribbean-ending-stereo-44k.ogg"
SECONDS = 2.0


@pytest.fixture
def demo_track(storage_root, tmp_path) -> Track:
    (path,) = write_demo_corpus(tmp_path / "corpus", n_tracks=1)
    return track_ingest(path=path)[0]


@pytest.fixture
def active_policy(demo_track):
    """A small trained policy, registered and active (dense reward only: no reward model yet)."""
    from rlhf.learning.configs import PolicyConfig
    from rlhf.learning.policy import train_policy
    from rlhf.cycle.policy_services import policy_register, track_arrays

    config = PolicyConfig(n_envs=2, n_steps=64, batch_size=64, n_epochs=1, net_arch=(32, 32), seed=0)
    run = train_policy(track_arrays([demo_track]), total_timesteps=128, learned_reward=None,
                       env_config=EnvConfig(learned_weight=0.0), config=config)
    return policy_register(run=run, reward_model=None, parent=None, hyperparameters={}, activate=True)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two equally long stretches of audio (every channel)."""
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _without_silence(audio: np.ndarray) -> np.ndarray:
    """``audio`` (n, channels) less its leading and trailing silence: 60 dB below its loud passages.

    Relative to its own level, so that a copy gained to another loudness is trimmed at the same places.
    """
    magnitude = np.abs(audio).max(axis=1)
    audible = np.flatnonzero(magnitude > 1e-3 * np.percentile(magnitude, 99))
    return audio[audible[0]: audible[-1] + 1]


def _check_written(out: Path, track: Track, target_seconds: float) -> None:
    """The source's rate, channels and format; opens and closes with the source's first and last seconds; lasts the target within one beat."""
    audio, sr = sf.read(out, dtype="float32", always_2d=True)
    source = track_load_native(track)
    analysis = track_load_analysis(track)
    assert (sr, audio.shape[1]) == (source.sample_rate, source.channels)
    assert sf.info(out).subtype == ("PCM_24" if source.subtype in ("PCM_24", "PCM_32", "FLOAT") else "PCM_16")
    beat_seconds = float(np.median(np.diff(analysis.beat_samples))) / analysis.sample_rate
    assert abs(audio.shape[0] / sr - target_seconds) <= beat_seconds + 0.01
    n = int(SECONDS * sr)
    ours, theirs = _without_silence(audio), _without_silence(source.samples)
    assert _correlation(ours[:n], theirs[:n]) > 0.8
    assert _correlation(ours[-n:], theirs[-n:]) > 0.8


@pytest.mark.slow
@pytest.mark.parametrize("duration_factor", [0.7, 1.4])
def test_retarget_command_on_a_demo_track_shortens_and_lengthens(demo_track, tmp_path, capsys, duration_factor):
    target = round(duration_factor * demo_track.duration_seconds, 1)
    out = tmp_path / "out.wav"
    call_command("retarget", str(demo_track.pk), duration=str(target), method="heuristic", out=str(out))
    _check_written(out, demo_track, target)
    printed = capsys.readouterr().out
    assert "seams (" in printed and "reward model score: no active reward model" in printed


@pytest.mark.slow
def test_retarget_command_on_a_real_recording_ingests_it_and_writes_flac(storage_root, tmp_path, capsys):
    out = tmp_path / "out.flac"
    call_command("retarget", str(REAL_CLIP), duration="0:22", method="heuristic", out=str(out))
    assert sf.info(out).format == "FLAC"
    track = Track.objects.get()
    _check_written(out, track, 22.0)
    assert "seams (" in capsys.readouterr().out


@pytest.fixture(scope="module")
def stereo_24bit_48k(tmp_path_factory) -> Path:
    """The stereo clip as a 24-bit 48 kHz WAV (resampled here; generated audio stays out of the repository)."""
    import librosa

    audio, sr = sf.read(STEREO_CLIP, dtype="float32", always_2d=True)
    path = tmp_path_factory.mktemp("sources") / "caribbean-ending-48k-24bit.wav"
    sf.write(path, librosa.resample(audio.T, orig_sr=sr, target_sr=48000).T, 48000, subtype="PCM_24")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("source, suffix, duration", [
    ("stereo 44.1 kHz Vorbis", ".wav", "0:15"),
    ("stereo 48 kHz 24-bit WAV", ".flac", "0:26"),
])
def test_retarget_command_writes_at_the_sources_rate_and_channels_with_its_ending(
        storage_root, tmp_path, stereo_24bit_48k, source, suffix, duration):
    path = STEREO_CLIP if source.endswith("Vorbis") else stereo_24bit_48k
    out = tmp_path / f"out{suffix}"
    call_command("retarget", str(path), duration=duration, method="heuristic", out=str(out))
    track = Track.objects.get()
    _check_written(out, track, parse_duration(duration))
    source_info, written = sf.info(path), sf.info(out)
    assert (written.samplerate, written.channels) == (source_info.samplerate, 2)
    # The last seconds are the recording's own ending, sample for sample up to the loudness gain.
    audio, sr = sf.read(out, dtype="float64", always_2d=True)
    original = track_load_native(track).samples.astype(np.float64)
    last_beat_end = Edit.objects.get().render["native"]["beat_starts_seconds"][-1]  # the written file's timeline
    ring_out = audio.shape[0] - int(round(last_beat_end * sr))
    assert ring_out > 0.3 * sr  # the clip rings on for half a second after its last beat
    assert _correlation(audio[-ring_out:], original[-ring_out:]) > 0.99


def test_retarget_command_refuses_a_source_it_would_downgrade(storage_root, tmp_path):
    import librosa

    y, sr = sf.read(REAL_CLIP, dtype="float32")
    three = tmp_path / "surround.wav"
    sf.write(three, np.stack([y, y, librosa.effects.preemphasis(y)], axis=1), sr)
    with pytest.raises(CommandError, match="surround.wav: 3 channels; retargeting keeps mono or stereo"):
        call_command("retarget", str(three), duration="0:22", method="heuristic", out=str(tmp_path / "o.wav"))
    eight = tmp_path / "lofi.wav"
    sf.write(eight, y, sr, subtype="PCM_U8")
    with pytest.raises(CommandError, match="lofi.wav: 8-bit samples"):
        call_command("retarget", str(eight), duration="0:22", method="heuristic", out=str(tmp_path / "o.wav"))
    assert not Edit.objects.exists() and not (tmp_path / "o.wav").exists()


@pytest.mark.slow
def test_retarget_command_with_the_active_policy(demo_track, active_policy, tmp_path, capsys):
    out = tmp_path / "policy.wav"
    target = round(0.6 * demo_track.duration_seconds, 1)
    call_command("retarget", demo_track.title, duration=str(target), method="policy", out=str(out))
    _check_written(out, demo_track, target)
    assert Edit.objects.get().source == active_policy.source


class PreferKeys:
    """Member rewards that prefer the edits of the given keys and are level on every other."""

    def __init__(self, keys):
        self.keys = set(keys)

    def member_rewards(self, items):
        return np.array([[1.0 if edit.key() in self.keys else 0.0 for _, edit in items]] * 2)


def test_best_of_n_says_which_candidate_won_and_credits_the_edit_to_its_maker(demo_track, active_policy, monkeypatch):
    """The heuristic's edit is in best-of-N's pool: where the reward model prefers it, it is delivered as the
    heuristic's, and the result says it was the heuristic candidate."""
    from editing.baselines import HEURISTIC, baseline_actions
    from editing.edit import apply_actions
    from rlhf.models import RewardModelVersion
    from rlhf.retarget import run
    from rlhf.retarget.services import Method, retarget_plan
    from rlhf.versions import reward_model_activate
    from editing.dense import dense_context
    from editing.edit import MODEL_FEATURE_VERSION, N_MODEL_FEATURES

    reward_model_activate(version=RewardModelVersion.objects.create(
        artifact="reward_models/x.pt", artifact_sha256="0" * 64, feature_version=MODEL_FEATURE_VERSION,
        n_features=N_MODEL_FEATURES, judgements_sha256="0" * 64, reward_mean=0.0, reward_std=1.0))
    plan = retarget_plan(track=demo_track, duration=round(0.75 * demo_track.duration_seconds, 1))
    analysis = track_load_analysis(demo_track)
    bars = analysis.bar_positions[plan.start_beat : plan.start_beat + plan.n_beats]
    heuristic = baseline_actions(HEURISTIC, rng=np.random.default_rng(0), excerpt_start=plan.start_beat,
                                 context=dense_context(analysis.features, analysis.beat_samples, analysis.bar_positions),
                                 bar_positions=bars, target_beats=plan.target_beats)
    key = apply_actions(heuristic, excerpt_start=plan.start_beat, bar_positions=bars, target_beats=plan.target_beats).key()
    # The reward model's file is not the subject here: its scores are.
    monkeypatch.setattr(run, "reward_model_load", lambda version: None)
    monkeypatch.setattr(run, "EnsembleReward", lambda ensemble: PreferKeys([key]))
    monkeypatch.setattr(run, "_reward_of", lambda edit: (None, None))
    outcome = run.retarget_run(track=demo_track, plan=plan, method=Method("best-of", 4))
    assert outcome.chosen_from == "heuristic" and outcome.to_json()["chosen_from"] == "heuristic"
    assert outcome.edit.source == "baseline:heuristic"
    # Level rewards: the policy's most probable edit, credited to the policy version.
    monkeypatch.setattr(run, "EnsembleReward", lambda ensemble: PreferKeys([]))
    outcome = run.retarget_run(track=demo_track, plan=plan, method=Method("best-of", 4))
    assert outcome.chosen_from == "policy" and outcome.edit.source == active_policy.source


@pytest.mark.parametrize("args, reason", [
    (["--duration", "0"], "more than zero"),
    (["--duration=-5"], "more than zero"),
    (["--duration", "soon"], "give seconds"),
    (["--duration", "999:00"], "half to twice"),
    (["--duration", "0:05"], "half to twice"),
    (["--duration", "0:30", "--from-beat", "0", "--to-beat", "6"], "shorter than two bars"),
    (["--duration", "0:30", "--method", "policy"], "no active policy yet.*heuristic"),
    (["--duration", "0:30", "--method", "best-of-1"], "N must be"),
])
def test_retarget_command_refuses_bad_input_with_the_reason_and_stores_nothing(demo_track, tmp_path, args, reason):
    method = [] if "--method" in args else ["--method", "heuristic"]
    with pytest.raises(CommandError, match=reason):
        call_command("retarget", str(demo_track.pk), *args, *method, "--out", str(tmp_path / "out.wav"))
    assert not Edit.objects.exists()
    assert not (tmp_path / "out.wav").exists()


def test_retarget_command_refuses_a_duration_past_the_bounds_with_the_range_and_accepts_the_bounds(demo_track,
                                                                                                 tmp_path):
    bounds = retarget_bounds(track=demo_track)
    assert bounds.lead_in_seconds > 0 or bounds.ring_out_seconds > 0  # the edges count, unstretched
    for outside in (bounds.lowest_seconds - 0.1, bounds.highest_seconds + 0.1):
        with pytest.raises(CommandError) as refused:
            call_command("retarget", str(demo_track.pk), duration=f"{outside:.1f}", method="heuristic",
                         out=str(tmp_path / "out.wav"))
        assert str(refused.value).endswith(f"is outside {bounds.describe()}")
    for bound in (bounds.lowest_seconds, bounds.highest_seconds):  # what the command is given, as typed
        assert retarget_plan(track=demo_track, duration=f"{bound:.1f}").target_seconds == bound


def test_retarget_command_writes_only_wav_or_flac(demo_track, tmp_path):
    with pytest.raises(CommandError, match="must be .wav or .flac"):
        call_command("retarget", str(demo_track.pk), duration="0:30", method="heuristic", out=str(tmp_path / "x.mp3"))


def test_retarget_command_refuses_a_file_that_is_not_audio(storage_root, tmp_path):
    bogus = tmp_path / "notes.ogg"
    bogus.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(CommandError, match="notes.ogg"):
        call_command("retarget", str(bogus), duration="0:30", method="heuristic", out=str(tmp_path / "o.wav"))
    assert not Track.objects.exists()


@pytest.mark.parametrize("text, seconds", [("150", 150.0), ("2:30", 150.0), ("1:02:03", 3723.0), ("2.5", 2.5), (90, 90.0)])
def test_durations_read_as_people_write_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "-1", "", "abc", "1:xx", float("nan"), True])
def test_durations_that_are_not_durations_are_refused(text):
    with pytest.raises(RetargetError):
        parse_duration(text)


@pytest.mark.parametrize("text, label", [("policy", "policy"), ("heuristic", "heuristic"), ("Best-of-8", "best-of-8")])
def test_methods_parse(text, label):
    assert method_parse(text).label == label


@pytest.mark.django_db(transaction=True)
def test_a_job_makes_both_results_and_sends_the_pair_to_annotators_once(demo_track, active_policy, django_user_model):
    user = django_user_model.objects.create(username="researcher")
    target = round(0.75 * demo_track.duration_seconds, 1)
    job = retarget_job_start(requested_by=user, duration=target, track=demo_track, methods=["policy", "heuristic"])
    job.refresh_from_db()  # the task ran when the transaction committed (tasks run inline in tests)
    assert job.status == RetargetJob.Status.DONE, job.error
    assert [r["method"] for r in job.results] == ["policy", "heuristic"]
    assert job.results[0]["source"] == active_policy.source and job.results[1]["source"] == "baseline:heuristic"
    edits = [Edit.objects.get(pk=r["edit_id"]) for r in job.results]
    assert {(e.excerpt_start_beat, e.n_source_beats, e.target_beats) for e in edits} == {(0, demo_track.n_beats, job.target_beats)}
    assert edits[0].actions_key != edits[1].actions_key  # a barely trained policy does not find the heuristic's edit
    comparison = retarget_job_send(job=job)
    assert retarget_job_send(job=job).pk == comparison.pk
    assert Comparison.objects.count() == 1 and comparison.proposed_by == f"retarget:{job.pk}"


@pytest.mark.django_db(transaction=True)
def test_a_job_refused_up_front_stores_nothing(demo_track, django_user_model):
    user = django_user_model.objects.create(username="researcher")
    with pytest.raises(RetargetServiceError, match="no active policy yet.*heuristic"):
        retarget_job_start(requested_by=user, duration=30, track=demo_track, methods=["best-of-8", "heuristic"])
    with pytest.raises(RetargetServiceError, match="half to twice"):
        retarget_job_start(requested_by=user, duration=1, track=demo_track, methods=["heuristic"])
    assert not RetargetJob.objects.exists() and not Edit.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_job_with_an_upload_that_is_not_audio_fails_with_the_reason(storage_root, django_user_model):
    from django.core.files.uploadedfile import SimpleUploadedFile

    user = django_user_model.objects.create(username="researcher")
    upload = SimpleUploadedFile("garbage.wav", b"RIFF....not really a wave file" * 50)
    job = retarget_job_start(requested_by=user, duration=30, upload=upload, methods=["heuristic"])
    job.refresh_from_db()
    assert job.status == RetargetJob.Status.FAILED
    assert "garbage" in job.error and str(storage_root) not in job.error
    assert not Track.objects.exists() and not Edit.objects.exists()
    assert not any(p.is_file() for p in (storage_root / "uploads").rglob("*"))  # the upload is not left behind


def test_running_a_job_twice_does_nothing_the_second_time(demo_track, django_user_model, django_capture_on_commit_callbacks):
    user = django_user_model.objects.create(username="researcher")
    with django_capture_on_commit_callbacks(execute=False):
        job = retarget_job_start(requested_by=user, duration=0.8 * demo_track.duration_seconds, track=demo_track,
                                 methods=["heuristic"])
    assert retarget_job_run(job_id=job.pk).status == RetargetJob.Status.DONE
    assert retarget_job_run(job_id=job.pk).status == RetargetJob.Status.DONE
    assert Edit.objects.count() == 1


def test_the_api_starts_polls_and_downloads_for_researchers_only(demo_track, client, django_user_model,
                                                                 django_capture_on_commit_callbacks):
    from django.contrib.auth.models import Group

    from annotations.roles import ANNOTATOR, RESEARCHER

    annotator = django_user_model.objects.create_user("ann", password="pw")
    annotator.groups.add(Group.objects.get_or_create(name=ANNOTATOR)[0])
    researcher = django_user_model.objects.create_user("res", password="pw")
    researcher.groups.add(Group.objects.get_or_create(name=RESEARCHER)[0])
    body = {"track": demo_track.pk, "duration": f"{0.8 * demo_track.duration_seconds:.1f}", "methods": ["heuristic"]}

    client.force_login(annotator)
    assert client.post("/api/retarget/", body, content_type="application/json").status_code == 403
    assert client.get("/retarget/").status_code == 403

    client.force_login(researcher)
    assert client.get("/retarget/").status_code == 200
    refused = client.post("/api/retarget/", {**body, "duration": "0"}, content_type="application/json")
    assert refused.status_code == 400 and "more than zero" in refused.json()["detail"]
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post("/api/retarget/", body, content_type="application/json")
    assert started.status_code == 202
    job = client.get(started.json()["url"]).json()
    assert job["status"] == "done", job["error"]
    (result,) = job["results"]
    wav = client.get(result["audio_url"])
    assert wav.status_code == 200 and wav["Content-Type"] == "audio/wav"
    flac = client.get(result["flac_url"])
    assert flac.status_code == 200 and b"".join(flac.streaming_content)[:4] == b"fLaC"
    client.force_login(annotator)
    assert client.get(result["audio_url"]).status_code == 403


def test_the_bounds_api_gives_researchers_the_range_the_start_api_accepts(demo_track, client, django_user_model,
                                                                          django_capture_on_commit_callbacks):
    from django.contrib.auth.models import Group

    from annotations.roles import ANNOTATOR, RESEARCHER

    url = "/api/retarget/bounds/"
    whole_track = {"track": demo_track.pk}
    assert client.get(url, whole_track).status_code == 403  # anonymous
    annotator = django_user_model.objects.create_user("ann", password="pw")
    annotator.groups.add(Group.objects.get_or_create(name=ANNOTATOR)[0])
    client.force_login(annotator)
    assert client.get(url, whole_track).status_code == 403
    researcher = django_user_model.objects.create_user("res", password="pw")
    researcher.groups.add(Group.objects.get_or_create(name=RESEARCHER)[0])
    client.force_login(researcher)

    # The whole track: its lead-in and ring-out count, unstretched; a passage inside it plays neither.
    whole = client.get(url, whole_track).json()
    bounds = retarget_bounds(track=demo_track)
    assert whole == {"track": demo_track.pk, "from_beat": 0, "to_beat": demo_track.n_beats,
                     "lowest_seconds": bounds.lowest_seconds, "highest_seconds": bounds.highest_seconds,
                     "passage_seconds": bounds.passage_seconds, "lead_in_seconds": bounds.lead_in_seconds,
                     "ring_out_seconds": bounds.ring_out_seconds}
    passage = client.get(url, {"track": demo_track.pk, "from_beat": 8, "to_beat": 40}).json()
    assert (passage["from_beat"], passage["to_beat"], passage["lead_in_seconds"], passage["ring_out_seconds"]) \
        == (8, 40, 0.0, 0.0)

    # Its ends start a job; a tenth of a second past them is refused with the range.
    def start(figures: dict, seconds: float, **passage_beats):
        body = {"track": demo_track.pk, "duration": f"{seconds:.1f}", "methods": ["heuristic"], **passage_beats}
        with django_capture_on_commit_callbacks(execute=False):  # checked and stored; not run here
            return client.post("/api/retarget/", body, content_type="application/json")

    for figures, beats in ((whole, {}), (passage, {"from_beat": 8, "to_beat": 40})):
        assert start(figures, figures["lowest_seconds"], **beats).status_code == 202
        assert start(figures, figures["highest_seconds"], **beats).status_code == 202
        refused = start(figures, figures["highest_seconds"] + 0.1, **beats)
        assert refused.status_code == 400 and "is outside" in refused.json()["detail"]
    assert RetargetJob.objects.count() == 4

    # Bad parameters: JSON 400 (a passage in the plan's own words), an unknown track 404.
    for query, reason in (({"track": demo_track.pk, "from_beat": 0, "to_beat": 4}, "shorter than two bars"),
                          ({"track": demo_track.pk, "from_beat": 30, "to_beat": 20}, "are not a range of its"),
                          ({"track": demo_track.pk, "to_beat": demo_track.n_beats + 1}, "are not a range of its")):
        answer = client.get(url, query)
        assert answer.status_code == 400 and answer["Content-Type"] == "application/json"
        with pytest.raises(RetargetServiceError) as planned:
            retarget_plan(track=demo_track, duration=30, from_beat=query.get("from_beat"), to_beat=query["to_beat"])
        assert answer.json() == {"detail": str(planned.value), "code": "retarget_refused"} and reason in str(planned.value)
    for query in ({}, {"track": "one"}, {"track": demo_track.pk, "from_beat": "-1"}):
        answer = client.get(url, query)
        assert answer.status_code == 400 and answer["Content-Type"] == "application/json", query
    missing = client.get(url, {"track": 987654})
    assert missing.status_code == 404 and missing.json()["code"] == "track_not_found"


def test_a_track_row_without_an_analysis_is_refused_not_a_server_error(storage_root, client):
    from annotations.roles import RESEARCHER
    from tests.annotations.factories import make_track, make_user

    client.force_login(make_user(role=RESEARCHER))
    track = make_track()  # a row only (no audio, no analysis), as the factories make them
    for answer in (client.get("/api/retarget/bounds/", {"track": track.pk}),
                   client.post("/api/retarget/", {"track": track.pk, "duration": "30", "methods": ["heuristic"]},
                               content_type="application/json")):
        assert answer.status_code == 409 and "no analysis is stored" in answer.json()["detail"]


def test_sending_two_results_that_are_one_edit_is_refused(demo_track, django_user_model, django_capture_on_commit_callbacks):
    user = django_user_model.objects.create(username="researcher")
    with django_capture_on_commit_callbacks(execute=True):
        job = retarget_job_start(requested_by=user, duration=0.8 * demo_track.duration_seconds, track=demo_track,
                                 methods=["heuristic", "heuristic"])
    job.refresh_from_db()
    assert job.status == RetargetJob.Status.DONE and job.results[0]["edit_id"] == job.results[1]["edit_id"]
    with pytest.raises(RetargetServiceError, match="same edit"):
        retarget_job_send(job=job)
    assert not Comparison.objects.exists()


@pytest.mark.slow
def test_the_api_delivers_a_stereo_recording_at_its_rate_with_its_opening_and_ending(
        storage_root, client, django_user_model, django_capture_on_commit_callbacks):
    import io

    from django.contrib.auth.models import Group

    from annotations.roles import RESEARCHER

    track = track_ingest(path=STEREO_CLIP)[0]
    researcher = django_user_model.objects.create_user("res", password="pw")
    researcher.groups.add(Group.objects.get_or_create(name=RESEARCHER)[0])
    client.force_login(researcher)
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post("/api/retarget/", {"track": track.pk, "duration": "0:15", "methods": ["heuristic"]},
                              content_type="application/json")
    job = client.get(started.json()["url"]).json()
    assert job["status"] == "done", job["error"]
    (result,) = job["results"]
    wav = io.BytesIO(b"".join(client.get(result["audio_url"]).streaming_content))
    flac = io.BytesIO(b"".join(client.get(result["flac_url"]).streaming_content))
    for download in (wav, flac):
        info = sf.info(download)
        assert (info.samplerate, info.channels, info.subtype) == (44100, 2, "PCM_16")
        download.seek(0)
    audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    source = _without_silence(track_load_native(track).samples)
    n = int(SECONDS * sr)
    assert _correlation(_without_silence(audio)[:n], source[:n]) > 0.8
    assert _correlation(_without_silence(audio)[-n:], source[-n:]) > 0.8
    # The page's figures and beat map describe the file it plays: beats start after the lead-in, the ring-out follows.
    assert result["duration_seconds"] == pytest.approx(audio.shape[0] / sr, abs=1e-3)
    assert 0 < result["beat_starts_seconds"][0] < result["beat_starts_seconds"][-1] < result["duration_seconds"]
    assert abs(result["duration_seconds"] - 15.0) <= 60.0 / track.tempo_bpm + 0.01
