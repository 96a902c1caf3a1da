"""Benchmark: simulated annotators doing next + submit against gunicorn and PostgreSQL over loopback.

Prints throughput (judgements/s), p50/p99 latency of each call and of the
next+submit pair, and judgements lost (submits answered 201 but not in the
database, or comparisons over quota): that must be 0.

    python bench/bench_annotate.py --annotators 32 --seconds 20                    # saturation: no pause
    python bench/bench_annotate.py --annotators 32 --seconds 30 --think-seconds 2  # paced: each pauses ~2 s

With ``--think-seconds 0`` every simulated annotator fires its next request
the moment the last one returns, which measures the server's capacity, not
what 32 people produce (a person listens to two edits for tens of seconds
between submits).  A positive value pauses each annotator for a random time
around it (uniform 0.5x to 1.5x) after each submit.

Uses its own database (``--database-url``, default .../studio_bench: created
and migrated if missing, emptied first, dropped at the end unless
``--keep-database``) and a temporary storage root, removed at the end.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def ensure_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin_url = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin_url = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare(n_annotators: int, n_comparisons: int, quota: int) -> list[str]:
    """Fresh rows: annotators and comparisons (tiny real WAVs); returns the usernames."""
    import django

    django.setup()
    from django.core.management import call_command

    from annotations.models import Assignment, Comparison, Edit, Judgement, Track
    from tests.annotations.factories import make_comparison, make_edit, make_track, make_user

    call_command("migrate", verbosity=0)
    for model in (Judgement, Assignment, Comparison, Edit, Track):
        model.objects.all().delete()
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(username__startswith="bench-").delete()
    track = make_track()
    edits = [make_edit(track, range(i, i + 16)) for i in range(12)]
    for i in range(n_comparisons):
        make_comparison(edit_a=edits[i % 12], edit_b=edits[(i + 1 + i // 12) % 12] if (i + 1 + i // 12) % 12 != i % 12
                        else edits[(i + 2) % 12], required_judgements=quota, priority=float(i % 7))
    return [make_user(f"bench-{k}").username for k in range(n_annotators)]


def annotator_loop(base: str, username: str, password: str, start: threading.Barrier, clock: dict, out: dict,
                   lock: threading.Lock, think_seconds: float = 0.0):
    import random

    import requests

    pause = random.Random(username)

    s = requests.Session()
    s.get(f"{base}/accounts/login/")
    r = s.post(f"{base}/accounts/login/", data={"username": username, "password": password,
                                                "csrfmiddlewaretoken": s.cookies["csrftoken"]},
               headers={"Referer": f"{base}/accounts/login/"}, allow_redirects=False)
    assert r.status_code == 302, f"login of {username} failed: {r.status_code}"
    headers = {"X-CSRFToken": s.cookies["csrftoken"], "Referer": f"{base}/annotate/"}
    # Everyone logs in first (password hashing is deliberately slow); the clock starts after.
    start.wait()
    deadline = clock["deadline"]
    nexts, submits, pairs, created, errors = [], [], [], 0, 0
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        r = s.get(f"{base}/api/comparisons/next/")
        t1 = time.perf_counter()
        nexts.append(t1 - t0)
        shown = r.json()["comparison"]
        if shown is None:
            break
        body = {"comparison": shown["id"], "choice": shown["left"]["choice"], "confidence": 3,
                "left_edit": shown["left"]["edit_id"], "seconds_a": 6.0, "seconds_b": 6.0, "switches": 1,
                "decision_seconds": 10.0}
        r = s.post(f"{base}/api/judgements/", json=body, headers=headers)
        t2 = time.perf_counter()
        submits.append(t2 - t1)
        pairs.append(t2 - t0)
        if r.status_code == 201:
            created += 1
        else:
            errors += 1
        if think_seconds > 0:
            time.sleep(min(think_seconds * pause.uniform(0.5, 1.5), max(0.0, deadline - time.perf_counter())))
    with lock:
        for key, values in (("next", nexts), ("submit", submits), ("pair", pairs)):
            out[key].extend(values)
        out["created"] += created
        out["errors"] += errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotators", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--comparisons", type=int, default=3000)
    parser.add_argument("--quota", type=int, default=3)
    parser.add_argument("--think-seconds", type=float, default=0.0,
                        help="mean pause of each annotator after a submit (0: saturation)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/studio_bench")
    parser.add_argument("--keep-database", action="store_true", help="leave the bench database behind for a look")
    args = parser.parse_args()
    try:
        run(args)
    finally:
        # WITH (FORCE) also closes this process's own connection to it.
        if not args.keep_database:
            drop_database(args.database_url)


def run(args: argparse.Namespace) -> None:
    storage = tempfile.mkdtemp(prefix="bench-annotate-")
    env = {**os.environ, "DATABASE_URL": args.database_url, "STORAGE_ROOT": storage,
           "ANNOTATION_MIN_LISTEN_SECONDS": "5", "ANNOTATION_GOLD_RATE": "0", "ANNOTATION_REPEAT_RATE": "0",
           "DJANGO_SETTINGS_MODULE": "feedback_site.settings", "LOG_LEVEL": "WARNING",
           # Plain HTTP on loopback: DEBUG off would demand secure (HTTPS-only) cookies.
           "DJANGO_DEBUG": "1"}
    os.environ.update(env)
    ensure_database(args.database_url)
    users = prepare(args.annotators, args.comparisons, args.quota)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "feedback_site.wsgi", "-b", f"127.0.0.1:{args.port}",
         "-w", str(args.workers), "--threads", str(args.threads), "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    base = f"http://127.0.0.1:{args.port}"
    try:
        import requests

        for _ in range(100):
            try:
                requests.get(f"{base}/accounts/login/", timeout=5)
                break
            except requests.RequestException:
                time.sleep(0.2)
        from tests.annotations.factories import PASSWORD

        out = {"next": [], "submit": [], "pair": [], "created": 0, "errors": 0}
        lock = threading.Lock()
        clock: dict = {}

        def go() -> None:
            clock["start"] = time.perf_counter()
            clock["deadline"] = clock["start"] + args.seconds

        barrier = threading.Barrier(len(users), action=go)
        threads = [threading.Thread(target=annotator_loop, args=(base, u, PASSWORD, barrier, clock, out, lock,
                                                                  args.think_seconds))
                   for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - clock["start"]
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(storage, ignore_errors=True)

    from django.db.models import Count

    from annotations.models import Comparison, Judgement

    stored = Judgement.objects.count()
    over_quota = Comparison.objects.annotate(n=Count("judgements")).filter(n__gt=args.quota).count()
    lost = out["created"] - stored
    ms = lambda v: f"{1000 * v:.1f} ms"  # noqa: E731
    print(f"annotators {args.annotators} (think {args.think_seconds:g} s), gunicorn {args.workers}x{args.threads}, "
          f"{elapsed:.1f} s after all logged in")
    print(f"judgements stored {stored}, submits answered 201 {out['created']}, other answers {out['errors']}")
    print(f"throughput {stored / elapsed:.1f} judgements/s ({2 * len(out['pair']) / elapsed:.1f} requests/s)")
    for key in ("next", "submit", "pair"):
        v = out[key]
        print(f"{key:7s} p50 {ms(statistics.median(v))}  p99 {ms(percentile(v, 99))}  (n={len(v)})")
    print(f"judgements lost {lost}, comparisons over quota {over_quota}")
    if lost or over_quota:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
