"""Benchmark: simulated annotators doing next + submit against gunicorn and PostgreSQL over loopback.

Prints throughput (judgements/s), p50/p99 latency of each call and of the
next+submit pair as the client saw it AND as the server spent it (gunicorn's
access log, ``%(D)s``), the CPU each side used, and judgements lost (submits
answered 201 but not in the database, or comparisons over quota): that must be 0.

    python bench/bench_annotate.py --seconds 30 --think-seconds 2   # paced: each annotator pauses ~2 s
    python bench/bench_annotate.py --seconds 20                     # saturation: no pause

The site runs as in production: ``DJANGO_DEBUG=0``, gunicorn with the
project's ``gunicorn.conf.py`` (``--workers/--threads/--worker-class``
override it), behind what looks to it like the HTTPS proxy (the client sends
``X-Forwarded-Proto: https`` and keeps the secure cookies itself, as a browser
would).  The client is one asyncio event loop speaking plain HTTP/1.1 over
loopback, one connection per annotator, in this process: on a 2-core box it
shares the cores with the site and PostgreSQL, so its own CPU time and how
late its event loop ran are printed too (the difference between the client's
and the server's latency is queueing in the kernel and gunicorn, plus the
client's own delay).

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
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NEXT_PATH = "/api/comparisons/next/"
SUBMIT_PATH = "/api/judgements/"
LOGIN_PATH = "/accounts/login/"


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
    users = [make_user(f"bench-{k}").username for k in range(n_annotators)]
    # A live database has planner statistics; fresh tables have none until autovacuum gets
    # to them, and without them the queue query sorts every open comparison.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return users


# --- a small HTTP/1.1 client -------------------------------------------------------------------------------


class HttpError(Exception):
    pass


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self):
        return json.loads(self.body)


class Browser:
    """One annotator's keep-alive connection and cookie jar, behind an HTTPS-terminating proxy.

    The cookies are secure (DEBUG off), so they are kept here whatever their
    flags say, as the browser on the other side of the proxy would.  A kept-alive
    connection the server closed while idle is reopened and the request sent
    again when nothing of the answer had arrived.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.cookies: dict[str, str] = {}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None

    async def request(self, method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None
                      ) -> Response:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "X-Forwarded-Proto: https",
                "Accept: application/json, text/html"]
        if self.cookies:
            head.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        if body or method == "POST":
            head.append(f"Content-Length: {len(body)}")
        payload = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        for attempt in (0, 1):
            reused = self.writer is not None
            if not reused:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                self.writer.write(payload)
                await self.writer.drain()
                status_line = await self.reader.readline()
                if not status_line:
                    raise ConnectionResetError("closed before the status line")
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if reused and attempt == 0:
                    continue  # the server closed the idle connection: nothing was answered, send again
                raise
            return await self._read_rest(status_line)
        raise AssertionError("unreachable")

    async def _read_rest(self, status_line: bytes) -> Response:
        status = int(status_line.split()[1])
        headers: list[tuple[str, str]] = []
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        given = dict(headers)
        if "content-length" in given:
            body = await self.reader.readexactly(int(given["content-length"]))
        elif given.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            body = b"".join(parts)
        else:
            body = await self.reader.read()
            given["connection"] = "close"
        for name, value in headers:
            if name == "set-cookie":
                key, _, rest = value.partition("=")
                val = rest.split(";", 1)[0]
                if val in ("", '""') or "max-age=0" in value.lower():
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = val
        if given.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, headers, body)


# --- simulated annotators ----------------------------------------------------------------------------------


@dataclass
class Tally:
    next: list[float] = field(default_factory=list)
    submit: list[float] = field(default_factory=list)
    pair: list[float] = field(default_factory=list)
    created: int = 0
    errors: int = 0
    answers: dict[int, int] = field(default_factory=dict)


async def login(browser: Browser, username: str, password: str) -> None:
    await browser.request("GET", LOGIN_PATH)
    form = urlencode({"username": username, "password": password,
                      "csrfmiddlewaretoken": browser.cookies["csrftoken"]}).encode()
    r = await browser.request("POST", LOGIN_PATH, body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Referer": f"https://{browser.host}:{browser.port}/"})
    if r.status != 302:
        raise HttpError(f"login of {username} failed: {r.status} {r.body[:300]!r}")


async def annotator(browser: Browser, username: str, go: asyncio.Event, clock: dict, tally: Tally,
                    think_seconds: float, burst_start: bool) -> None:
    pause = random.Random(username)
    await go.wait()
    deadline = clock["deadline"]
    json_headers = {"Content-Type": "application/json", "X-CSRFToken": browser.cookies["csrftoken"],
                    "Referer": f"https://{browser.host}:{browser.port}/annotate/"}
    if think_seconds > 0 and not burst_start:
        # Real annotators are not in step: start each somewhere inside one think time.
        await asyncio.sleep(pause.uniform(0, think_seconds))
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        r = await browser.request("GET", NEXT_PATH)
        t1 = time.perf_counter()
        if r.status != 200:
            raise HttpError(f"next for {username}: {r.status} {r.body[:300]!r}")
        tally.next.append(t1 - t0)
        shown = r.json()["comparison"]
        if shown is None:
            break
        body = {"comparison": shown["id"], "choice": shown["left"]["choice"], "confidence": 3,
                "left_edit": shown["left"]["edit_id"], "seconds_a": 6.0, "seconds_b": 6.0, "switches": 1,
                "decision_seconds": 10.0}
        r = await browser.request("POST", SUBMIT_PATH, body=json.dumps(body).encode(), headers=json_headers)
        t2 = time.perf_counter()
        tally.submit.append(t2 - t1)
        tally.pair.append(t2 - t0)
        tally.answers[r.status] = tally.answers.get(r.status, 0) + 1
        if r.status == 201:
            tally.created += 1
        else:
            tally.errors += 1
        if think_seconds > 0:
            await asyncio.sleep(min(think_seconds * pause.uniform(0.5, 1.5), max(0.0, deadline - time.perf_counter())))


async def loop_lag(stop: asyncio.Event, out: list[float], every: float = 0.005) -> None:
    """How late the client's event loop wakes up: its own share of the measured latency."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(every)
        out.append(loop.time() - t - every)


async def drive(host: str, port: int, users: list[str], password: str, seconds: float, think_seconds: float,
                burst_start: bool, on_start) -> tuple[Tally, float, list[float], float]:
    browsers = [Browser(host, port) for _ in users]
    # Everyone logs in first (password hashing is deliberately slow); the clock starts after.
    await asyncio.gather(*(login(b, u, password) for b, u in zip(browsers, users)))
    tally, go, stop, lag = Tally(), asyncio.Event(), asyncio.Event(), []
    clock = {}
    tasks = [asyncio.create_task(annotator(b, u, go, clock, tally, think_seconds, burst_start))
             for b, u in zip(browsers, users)]
    lag_task = asyncio.create_task(loop_lag(stop, lag))
    on_start()
    cpu0 = time.process_time()
    clock["start"] = time.perf_counter()
    clock["deadline"] = clock["start"] + seconds
    go.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - clock["start"]
    cpu = time.process_time() - cpu0
    stop.set()
    await lag_task
    for b in browsers:
        await b.close()
    return tally, elapsed, lag, cpu


# --- server side -------------------------------------------------------------------------------------------


def process_tree_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of ``pid`` and its live descendants (the gunicorn workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def database_cpu_seconds(dbname: str) -> float:
    """CPU seconds of the PostgreSQL backends connected to ``dbname`` (named in their process title)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if f" {dbname} ".encode() not in (proc / "cmdline").read_bytes().replace(b"\0", b" "):
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def read_access_log(path: Path) -> dict[str, list[float]]:
    """Seconds the server spent on each next and submit (``%(D)s`` microseconds), from gunicorn's access log."""
    spent: dict[str, list[float]] = {"next": [], "submit": []}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        method, url, _status, micros = parts
        key = "next" if url == NEXT_PATH else "submit" if (method, url) == ("POST", SUBMIT_PATH) else None
        if key is not None:
            spent[key].append(int(micros) / 1e6)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotators", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--comparisons", type=int, default=3000)
    parser.add_argument("--quota", type=int, default=3)
    parser.add_argument("--think-seconds", type=float, default=0.0,
                        help="mean pause of each annotator after a submit (0: saturation)")
    parser.add_argument("--burst-start", action="store_true",
                        help="paced annotators all ask at the same instant first (as this bench did until it "
                             "spread their starts over one think time)")
    parser.add_argument("--workers", type=int, help="gunicorn worker processes (default: gunicorn.conf.py)")
    parser.add_argument("--threads", type=int, help="threads per gunicorn worker (default: gunicorn.conf.py)")
    parser.add_argument("--worker-class", help="gunicorn worker class (default: gunicorn.conf.py)")
    parser.add_argument("--gunicorn-arg", action="append", default=[], help="passed on to gunicorn (repeatable)")
    parser.add_argument("--debug", action="store_true", help="DJANGO_DEBUG=1 (as this bench ran before: slower)")
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
    access_log = Path(storage) / "access.log"
    # The bench measures what next + submit cost the server, so nobody listens: a minimum listen of 0
    # (the listening rule still runs on every submit, finding nothing required), and the judgement
    # throttle out of the way (at saturation one simulated annotator submits many times a second).
    env = {**os.environ, "DATABASE_URL": args.database_url, "STORAGE_ROOT": storage,
           "ANNOTATION_MIN_LISTEN_SECONDS": "0", "THROTTLE_JUDGEMENTS": "1000000/min",
           "ANNOTATION_GOLD_RATE": "0", "ANNOTATION_REPEAT_RATE": "0",
           "DJANGO_SETTINGS_MODULE": "feedback_site.settings", "LOG_LEVEL": "WARNING",
           "DJANGO_DEBUG": "1" if args.debug else "0", "SECRET_KEY": "bench-only-" + "x" * 40,
           "ALLOWED_HOSTS": "127.0.0.1", "STATIC_ROOT": str(Path(storage) / "static")}
    (Path(storage) / "static").mkdir()
    os.environ.update(env)
    ensure_database(args.database_url)
    users = prepare(args.annotators, args.comparisons, args.quota)
    command = [sys.executable, "-m", "gunicorn", "feedback_site.wsgi", "-b", f"127.0.0.1:{args.port}",
               "--log-level", "warning", "--access-logfile", str(access_log),
               "--access-logformat", "%(m)s %(U)s %(s)s %(D)s"]
    for flag, value in (("--workers", args.workers), ("--threads", args.threads),
                        ("--worker-class", args.worker_class)):
        if value is not None:
            command += [flag, str(value)]
    command += args.gunicorn_arg
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    dbname = urlparse(args.database_url).path.lstrip("/")
    try:
        import urllib.error
        import urllib.request

        for _ in range(150):
            try:
                urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{args.port}{LOGIN_PATH}", headers={"X-Forwarded-Proto": "https"}), timeout=5)
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        from tests.annotations.factories import PASSWORD

        cpu0 = {}

        def on_start() -> None:
            # After the logins (password hashing is slow on purpose): only next and submit are measured.
            cpu0.update(server=process_tree_cpu_seconds(server.pid), db=database_cpu_seconds(dbname))

        tally, elapsed, lag, client_cpu = asyncio.run(
            drive("127.0.0.1", args.port, users, PASSWORD, args.seconds, args.think_seconds, args.burst_start,
                  on_start))
        server_cpu = process_tree_cpu_seconds(server.pid) - cpu0["server"]
        db_cpu = database_cpu_seconds(dbname) - cpu0["db"]
        served = read_access_log(access_log)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(storage, ignore_errors=True)

    from django.db.models import Count

    from annotations.models import Comparison, Judgement

    stored = Judgement.objects.count()
    over_quota = Comparison.objects.annotate(n=Count("judgements")).filter(n__gt=args.quota).count()
    lost = tally.created - stored
    n_requests = len(tally.next) + len(tally.submit)
    ms = lambda v: f"{1000 * v:6.1f} ms"  # noqa: E731
    config = " ".join(f"{k}={v}" for k, v in (("workers", args.workers), ("threads", args.threads),
                                               ("class", args.worker_class)) if v is not None)
    burst = ", burst start" if args.burst_start else ""
    print(f"annotators {args.annotators} (think {args.think_seconds:g} s{burst}), gunicorn "
          f"{config or 'per gunicorn.conf.py'} {' '.join(args.gunicorn_arg)}, DEBUG {int(args.debug)}, "
          f"{elapsed:.1f} s after all logged in")
    print(f"judgements stored {stored}, submits answered 201 {tally.created}, other answers {tally.errors} "
          f"{ {k: v for k, v in tally.answers.items() if k != 201} or ''}")
    print(f"throughput {stored / elapsed:.1f} judgements/s ({n_requests / elapsed:.1f} requests/s)")
    print("latency as the client saw it:")
    for key in ("next", "submit", "pair"):
        v = getattr(tally, key)
        print(f"  {key:7s} p50 {ms(statistics.median(v))}  p99 {ms(percentile(v, 99))}  max {ms(max(v))}  (n={len(v)})")
    print("time the server spent (gunicorn %(D)s, from request parsed to response written):")
    for key in ("next", "submit"):
        v = served[key]
        if v:
            print(f"  {key:7s} p50 {ms(statistics.median(v))}  p99 {ms(percentile(v, 99))}  max {ms(max(v))}  (n={len(v)})")
    print(f"client event loop woke late by p50 {ms(statistics.median(lag))}  p99 {ms(percentile(lag, 99))}  "
          f"max {ms(max(lag))}")
    per = lambda s: f"{1000 * s / max(1, n_requests):.1f} ms/request"  # noqa: E731
    print(f"CPU: gunicorn {server_cpu:.1f} s ({per(server_cpu)}), PostgreSQL backends {db_cpu:.1f} s ({per(db_cpu)}), "
          f"client {client_cpu:.1f} s ({per(client_cpu)}); {os.cpu_count()} cores x {elapsed:.1f} s available")
    print(f"judgements lost {lost}, comparisons over quota {over_quota}")
    if lost or over_quota:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
