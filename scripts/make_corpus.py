"""Build the evaluation corpus of real, freely licensed music from Debian's packages, outside git.

    .venv/bin/python scripts/make_corpus.py [--out var/corpus] [--excerpts-per-package 8]

Downloads the music packages below with ``apt-get download`` (no root needed; nothing is
installed), unpacks them into a temporary folder, cuts excerpts of 30 to 60 s (from 20 % into
each chosen track, at a random length) plus two whole tracks, writes them as 16-bit FLAC at the
source's rate and channels into ``--out``, and writes ``CORPUS.md`` beside them: every file's
package, source track, span, and the package's copyright and licence text.  Running it again
rewrites the same corpus (seeded).  The audio never goes into git (``var/`` is ignored).
"""
from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile as sf

# (package, style); its music is every audio file under a folder named "music"
PACKAGES = (
    ("hyperrogue-music", "ambient / folk electronic (HyperRogue)"),
    ("wesnoth-1.16-music", "orchestral (Battle for Wesnoth)"),
    ("lincity-ng-data", "electronic / lounge / blues (LinCity-NG)"),
)
MIN_SECONDS, MAX_SECONDS = 30.0, 60.0


def fetch(package: str, work: Path) -> Path:
    """Download and unpack ``package``; returns the unpacked root."""
    subprocess.run(["apt-get", "download", package], cwd=work, check=True, capture_output=True)
    deb = next(work.glob(f"{package}_*.deb"))
    root = work / package
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    deb.unlink()
    return root


def copyright_text(root: Path, package: str) -> str:
    path = root / "usr/share/doc" / package / "copyright"
    return path.read_text(errors="replace") if path.exists() else "(no copyright file in the package)"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="var/corpus")
    parser.add_argument("--excerpts-per-package", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = random.Random(args.seed)
    notes = ["# Evaluation corpus", "", "Made by `scripts/make_corpus.py` from Debian's packages; not in git.", ""]
    licences = []
    whole_left = 2
    with tempfile.TemporaryDirectory(prefix="corpus-") as tmp:
        for package, style in PACKAGES:
            try:
                root = fetch(package, Path(tmp))
            except (subprocess.CalledProcessError, StopIteration) as err:
                print(f"{package}: cannot be downloaded ({err}); skipped", file=sys.stderr)
                continue
            tracks = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".ogg", ".flac", ".wav")
                            and "music" in (part.lower() for part in p.relative_to(root).parts[:-1]))
            tracks = [t for t in tracks if sf.info(t).duration >= MIN_SECONDS + 10]
            if not tracks:
                print(f"{package}: no music found (no audio under a 'music' folder); skipped", file=sys.stderr)
                continue
            chosen = rng.sample(tracks, min(args.excerpts_per_package, len(tracks)))
            notes += [f"## {package}: {style}", ""]
            for track in chosen:
                info = sf.info(track)
                if whole_left and info.duration <= 240:
                    start, seconds, kind = 0.0, info.duration, "whole track"
                    whole_left -= 1
                else:
                    seconds = rng.uniform(MIN_SECONDS, min(MAX_SECONDS, info.duration - 5))
                    start = min(0.2 * info.duration, info.duration - seconds)
                    kind = "excerpt"
                audio, sr = sf.read(track, start=int(start * info.samplerate),
                                    frames=int(seconds * info.samplerate), dtype="float32", always_2d=True)
                name = f"{slug(package)}-{slug(track.stem)}.flac"
                # FLAC: libsndfile's Vorbis encoder crashes (SIGSEGV) on whole-excerpt writes here.
                sf.write(out / name, audio if audio.shape[1] > 1 else audio[:, 0], sr, format="FLAC", subtype="PCM_16")
                notes.append(f"- `{name}`: {kind} of `{track.relative_to(root)}`, {start:.1f} s to "
                             f"{start + seconds:.1f} s, {sr} Hz, {audio.shape[1]} channel(s)")
            notes.append("")
            licences += [f"## Licence of {package}", "", "```", copyright_text(root, package).strip(), "```", ""]
    (out / "CORPUS.md").write_text("\n".join(notes + licences) + "\n")
    n = len(list(out.glob("*.flac")))
    print(f"wrote {n} files and CORPUS.md to {out}")
    return 0 if n >= 4 else 1


if __name__ == "__main__":
    sys.exit(main())
