"""manage.py evaluate_loop: does feedback make the editor better?  Arms against opponents on held-out tracks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from editing.demo import write_demo_corpus
from rlhf.evidence.evaluation import EvaluationError, corpus_files, format_table, plot, split_tracks, summarise, write_json
from rlhf.evidence.listeners import DEFAULT_LISTENER, ListenerError, load_listener
from rlhf.management.commands.run_cycle import add_parameter_arguments, parameters_from_options
from rlhf.evidence.simulate import AnnotatorModel

# Defaults sized to finish in under 30 minutes on 2 CPU cores (measured: see the README).
DEFAULT_HELD_OUT = 2
DEFAULT_EVAL_EXCERPTS = 24
DEFAULT_BASELINE_EXCERPTS = 8


class Command(BaseCommand):
    help = ("Run the loop for N seeds x K cycles with simulated annotators (the listener under test) and compare "
            "three arms (mix, dense_only, learned_only: same PPO steps, same judgements) against random edits, "
            "the bar-aligned cut, the retargeting heuristic, their first policy and each other, on held-out "
            "tracks, with 95 % bootstrap intervals.  Each seed runs in its own throw-away studio.")

    def add_arguments(self, parser):
        parser.add_argument("--corpus", default=None, help="folder of audio files (default: the 6-track demo corpus)")
        parser.add_argument("--seeds", type=int, default=3)
        parser.add_argument("--cycles", type=int, default=3)
        parser.add_argument("--listener", default=DEFAULT_LISTENER, help="PATH.py:NAME or module:NAME")
        parser.add_argument("--out", default="evaluate_loop.json", help="JSON file with every figure")
        parser.add_argument("--plot", default=None, help="PNG file (default: --out with .png)")
        parser.add_argument("--held-out", type=int, default=DEFAULT_HELD_OUT, help="held-out tracks")
        parser.add_argument("--eval-excerpts", type=int, default=DEFAULT_EVAL_EXCERPTS,
                            help="held-out passages scored per seed")
        parser.add_argument("--baseline-excerpts", type=int, default=DEFAULT_BASELINE_EXCERPTS,
                            help="baseline comparisons per training track before the first cycle")
        parser.add_argument("--annotators", type=int, default=3)
        parser.add_argument("--noise", type=float, default=AnnotatorModel.noise, help="share of random answers")
        parser.add_argument("--workdir", default=None,
                            help="where each seed's studio lives (default: a temporary folder)")
        add_parameter_arguments(parser)

    def handle(self, *args, **opts):
        if opts["seeds"] < 1 or opts["cycles"] < 1:
            raise CommandError("--seeds and --cycles must be at least 1")
        try:
            load_listener(opts["listener"])  # fail here, not in every seed
        except ListenerError as err:
            raise CommandError(str(err)) from err
        workdir = Path(opts["workdir"] or tempfile.mkdtemp(prefix="evaluate-loop-"))
        corpus = Path(opts["corpus"]) if opts["corpus"] else None
        if corpus is None:
            corpus = workdir / "demo-corpus"
            write_demo_corpus(corpus)
        try:
            train, held = split_tracks(corpus_files(corpus), n_held_out=opts["held_out"])
        except EvaluationError as err:
            raise CommandError(str(err)) from err
        parameters = parameters_from_options(opts)
        self.stdout.write(f"corpus {corpus}: training on {', '.join(p.name for p in train)}; "
                          f"held out {', '.join(p.name for p in held)}")
        self.stdout.write(f"cycle parameters: {json.dumps(parameters.to_json())}")
        began = time.perf_counter()
        results = []
        for seed in range(opts["seeds"]):
            home = workdir / f"seed{seed}"
            home.mkdir(parents=True, exist_ok=True)
            result = home / "result.json"
            # The throw-away studio's simulated annotators still go through the listening rule (their
            # audio recorded as served), but wait no wall time for it: a minute of waiting per
            # round would cost an evaluation hours and measure nothing.
            env = {**os.environ, "VAR_DIR": str(home), "STORAGE_ROOT": str(home / "storage"),
                   "ANNOTATION_MIN_LISTEN_SECONDS": "0"}
            for name in ("DATABASE_URL", "CELERY_BROKER_URL", "STORAGE_BACKEND"):
                env.pop(name, None)
            command = [
                sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "evaluate_seed",
                "--corpus", str(corpus), "--held-out", str(opts["held_out"]), "--seed", str(seed),
                "--cycles", str(opts["cycles"]), "--listener", opts["listener"],
                "--parameters", json.dumps(parameters.to_json()), "--noise", str(opts["noise"]),
                "--annotators", str(opts["annotators"]), "--eval-excerpts", str(opts["eval_excerpts"]),
                "--baseline-excerpts", str(opts["baseline_excerpts"]), "--result", str(result),
            ]
            seed_began = time.perf_counter()
            done = subprocess.run(command, env=env, cwd=str(settings.BASE_DIR), stderr=subprocess.PIPE, text=True)
            if done.returncode != 0:
                raise CommandError(f"seed {seed} failed: {done.stderr.strip()[-2000:]}")
            results.append(json.loads(result.read_text()))
            self.stdout.write(f"seed {seed}: {time.perf_counter() - seed_began:.0f} s")
        summary = summarise(results, annotator=AnnotatorModel(noise=opts["noise"]))
        out = Path(opts["out"])
        data = {
            "listener": opts["listener"], "corpus": str(corpus), "seeds": opts["seeds"], "cycles": opts["cycles"],
            "train_tracks": [p.name for p in train], "held_out_tracks": [p.name for p in held],
            "parameters": parameters.to_json(), "eval_excerpts": opts["eval_excerpts"],
            "seconds": round(time.perf_counter() - began, 1), **summary, "per_seed": results,
        }
        write_json(out, data)
        picture = Path(opts["plot"]) if opts["plot"] else out.with_suffix(".png")
        plot(summary, picture)
        self.stdout.write(format_table(summary))
        self.stdout.write(f"{data['seconds']:.0f} s; figures in {out}, plot in {picture}")
