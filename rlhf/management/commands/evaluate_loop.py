"""manage.py evaluate_loop: does feedback make the editor better than the hand-written one?  On held-out tracks."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from editing.demo import write_demo_corpus
from rlhf.evidence.evaluation import (
    EvaluationError, corpus_files, fold_split, format_table, listener_probe, plot, summarise, write_json,
)
from rlhf.evidence.listeners import DEFAULT_LISTENER, ListenerError, load_listener
from rlhf.evidence.simulate import AnnotatorModel
from rlhf.management.commands.run_cycle import add_parameter_arguments, parameters_from_options

# Defaults sized to finish in under 30 minutes on 2 CPU cores (measured: see the README).
DEFAULT_FOLDS = 3
DEFAULT_EVAL_EXCERPTS = 24
DEFAULT_BASELINE_EXCERPTS = 8
BAR_WIDTH = 20


def default_corpus() -> Path | None:
    """``var/corpus`` (``scripts/make_corpus.py``) when it holds enough usable tracks, else None (the demo corpus)."""
    folder = Path(settings.VAR_DIR) / "corpus"
    try:
        corpus_files(folder)
    except EvaluationError:
        return None
    return folder


class Command(BaseCommand):
    help = ("Run the loop for N seeds x K cycles with simulated annotators (the listener under test), each seed "
            "holding out a different fold of tracks, and compare the heuristic, the learned planner, the PPO "
            "policy (alone, best of N, dense score only), the bar-aligned cut and random edits on the held-out "
            "tracks: win rates, shares better / worse / identical and paired differences with two-level "
            "(track, excerpt) 95 %% intervals, compute-matched best of N, reward- and seam-model accuracy on "
            "heuristic-versus-challenger pairs, and the judgement-efficiency curve.  Each seed runs in its own "
            "throw-away studio.")

    def add_arguments(self, parser):
        parser.add_argument("--corpus", default=None,
                            help="folder of audio files (default: var/corpus when scripts/make_corpus.py made it, "
                                 "else the 6-track demo corpus)")
        parser.add_argument("--seeds", type=int, default=3)
        parser.add_argument("--cycles", type=int, default=3)
        parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS,
                            help="folds of tracks; seed s holds out fold s mod folds")
        parser.add_argument("--listener", default=DEFAULT_LISTENER, help="PATH.py:NAME or module:NAME")
        parser.add_argument("--out", default="evaluate_loop.json", help="JSON file with every figure")
        parser.add_argument("--plot", default=None, help="PNG file (default: --out with .png)")
        parser.add_argument("--eval-excerpts", type=int, default=DEFAULT_EVAL_EXCERPTS,
                            help="held-out passages scored per seed")
        parser.add_argument("--baseline-excerpts", type=int, default=DEFAULT_BASELINE_EXCERPTS,
                            help="baseline comparisons per training track before the first cycle")
        parser.add_argument("--annotators", type=int, default=3)
        parser.add_argument("--noise", type=float, default=AnnotatorModel.noise, help="share of random answers")
        parser.add_argument("--jobs", type=int, default=1, help="seeds run side by side (processes)")
        parser.add_argument("--threads", type=int, default=2,
                            help="CPU threads of each seed's process, whatever --jobs is: the figures do not depend "
                                 "on how many seeds run at once (torch's sums depend on its thread count)")
        parser.add_argument("--resume", action="store_true",
                            help="keep the finished seeds of an earlier run with the same settings in --workdir")
        parser.add_argument("--workdir", default=None,
                            help="where each seed's studio lives (default: beside --out, OUT.seeds/)")
        add_parameter_arguments(parser)

    def handle(self, *args, **opts):
        if min(opts["seeds"], opts["cycles"], opts["jobs"], opts["threads"]) < 1:
            raise CommandError("--seeds, --cycles, --jobs and --threads must be at least 1")
        # Absolute paths: each seed's process runs from the repository root, wherever this one started.
        out = Path(opts["out"]).resolve()
        workdir = Path(opts["workdir"]).resolve() if opts["workdir"] else out.with_name(f"{out.stem}.seeds")
        workdir.mkdir(parents=True, exist_ok=True)
        opts["listener"] = _absolute_listener(opts["listener"])
        corpus = Path(opts["corpus"]).resolve() if opts["corpus"] else default_corpus()
        if corpus is None:
            corpus = workdir / "demo-corpus"
            write_demo_corpus(corpus)
        try:
            files = corpus_files(corpus)
            splits = [fold_split(files, seed=s, n_folds=opts["folds"]) for s in range(opts["seeds"])]
            # Fail here, before any training: an import error, a wrong signature or a NaN score.
            listener_probe(load_listener(opts["listener"]), files[0])
        except (EvaluationError, ListenerError) as err:
            raise CommandError(str(err)) from err
        parameters = parameters_from_options(opts)
        held_by_seed = [[p.stem for p in held] for _, held in splits]
        self.stdout.write(f"corpus {corpus}: {len(files)} tracks, {opts['folds']} folds; held out by seed: "
                          + "; ".join(", ".join(h) for h in held_by_seed))
        self.stdout.write(f"cycle parameters: {json.dumps(parameters.to_json())}")
        settings_of_run = {
            "corpus": str(corpus.resolve()), "listener": opts["listener"], "cycles": opts["cycles"],
            "folds": opts["folds"], "threads": opts["threads"], "parameters": parameters.to_json(), "noise": opts["noise"],
            "annotators": opts["annotators"], "eval_excerpts": opts["eval_excerpts"],
            "baseline_excerpts": opts["baseline_excerpts"],
        }
        began = time.perf_counter()
        lock = threading.Lock()

        def say(line: str) -> None:
            with lock:
                self.stdout.write(line)
                self.stdout.flush()

        children: set[subprocess.Popen] = set()

        def one_seed(seed: int) -> dict:
            home = workdir / f"seed{seed}"
            result = home / "result.json"  # written here, with its settings, only once the seed is finished
            raw = home / "seed.json"  # what the seed's process writes
            train, held = splits[seed]
            wanted = {**settings_of_run, "seed": seed, "train": [p.name for p in train],
                      "held_out": [p.name for p in held]}
            if result.is_file():
                kept = json.loads(result.read_text())
                if opts["resume"] and kept.get("settings") == wanted:
                    say(f"seed {seed + 1}/{opts['seeds']}: finished earlier, kept ({result})")
                    return kept
                if opts["resume"]:
                    raise CommandError(f"seed {seed}: {result} was made with other settings; run without "
                                       f"--resume to start again, or give another --workdir")
            # A seed not finished starts again in an empty studio (a half-run studio holds tracks).
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir(parents=True)
            # The throw-away studio's simulated annotators still go through the listening rule (their
            # audio recorded as served), but wait no wall time for it.
            env = {**os.environ, "VAR_DIR": str(home), "STORAGE_ROOT": str(home / "storage"),
                   "ANNOTATION_MIN_LISTEN_SECONDS": "0", "PYTHONUNBUFFERED": "1"}
            env.update(OMP_NUM_THREADS=str(opts["threads"]), MKL_NUM_THREADS=str(opts["threads"]))
            for name in ("DATABASE_URL", "CELERY_BROKER_URL", "STORAGE_BACKEND"):
                env.pop(name, None)
            command = [
                sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "evaluate_seed",
                "--split", json.dumps({"train": [str(p) for p in train], "held_out": [str(p) for p in held]}),
                "--seed", str(seed), "--cycles", str(opts["cycles"]), "--listener", opts["listener"],
                "--parameters", json.dumps(parameters.to_json()), "--noise", str(opts["noise"]),
                "--annotators", str(opts["annotators"]), "--eval-excerpts", str(opts["eval_excerpts"]),
                "--baseline-excerpts", str(opts["baseline_excerpts"]), "--result", str(raw),
            ]
            seed_began = time.perf_counter()
            child = subprocess.Popen(command, env=env, cwd=str(settings.BASE_DIR), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
            children.add(child)
            errors: list[str] = []
            reader = threading.Thread(target=lambda: errors.extend(child.stderr), daemon=True)
            reader.start()
            for line in child.stdout:
                say(_progress_line(seed, opts["seeds"], line.rstrip(), time.perf_counter() - seed_began))
            child.wait()
            reader.join()
            children.discard(child)
            if child.returncode != 0:
                raise CommandError(f"seed {seed} failed: {''.join(errors).strip()[-2000:]}")
            data = json.loads(raw.read_text())
            data["settings"] = wanted
            data["seconds"] = round(time.perf_counter() - seed_began, 1)
            write_json(result, data)
            say(f"seed {seed + 1}/{opts['seeds']}: done in {data['seconds']:.0f} s")
            return data

        results = []
        pool = ThreadPoolExecutor(max_workers=opts["jobs"])
        try:
            # The first seed to fail stops the run at once: the queued seeds never start, the running ones end.
            for done in as_completed([pool.submit(one_seed, s) for s in range(opts["seeds"])]):
                results.append(done.result())
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            for child in list(children):
                child.terminate()
            for child in list(children):
                child.wait(timeout=60)
        results.sort(key=lambda r: r["seed"])
        summary = summarise(results, annotator=AnnotatorModel(noise=opts["noise"]))
        judgements = [r["cycles"][-1]["judgements"] for r in results]
        data = {
            "listener": opts["listener"],
            "corpus": {"path": str(corpus), "tracks": len(files), "folds": opts["folds"],
                       "held_out_by_seed": held_by_seed,
                       "distinct_held_out": len({t for h in held_by_seed for t in h})},
            "judgements_per_seed": round(sum(judgements) / len(judgements)), "judgements_by_seed": judgements,
            "seeds": opts["seeds"], "n_cycles": opts["cycles"], "parameters": parameters.to_json(),
            "eval_excerpts": opts["eval_excerpts"], "seconds": round(time.perf_counter() - began, 1),
            **summary, "per_seed": results,
        }
        write_json(out, data)
        picture = Path(opts["plot"]) if opts["plot"] else out.with_suffix(".png")
        plot(summary, picture)
        self.stdout.write(format_table(summary))
        self.stdout.write(f"{data['seconds']:.0f} s; figures in {out}, plot in {picture}")


def _absolute_listener(spec: str) -> str:
    """``PATH.py:NAME`` with PATH made absolute (the seeds' processes run elsewhere); ``module:NAME`` as it is."""
    where, sep, name = spec.rpartition(":")
    if sep and where.endswith(".py"):
        return f"{Path(where).resolve()}:{name}"
    return spec


def _progress_line(seed: int, n_seeds: int, line: str, seconds: float) -> str:
    """A child's ``PROGRESS done/total message`` as a bar; other lines as they are, named by seed."""
    if line.startswith("PROGRESS "):
        fraction, _, message = line[len("PROGRESS "):].partition(" ")
        done, _, total = fraction.partition("/")
        if done.isdigit() and total.isdigit() and int(total) > 0:
            filled = BAR_WIDTH * int(done) // int(total)
            return (f"seed {seed + 1}/{n_seeds} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
                    f"{done}/{total} cycles {seconds:5.0f} s  {message}")
    return f"seed {seed + 1}/{n_seeds}: {line}"
