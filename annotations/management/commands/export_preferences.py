"""Export judgements as a preference dataset file (JSONL, CSV or Parquet) with its dataset card.

    python manage.py export_preferences out/prefs.parquet --format parquet \
        --date-from 2024-05-01 --min-confidence 3 --min-gold-accuracy 0.8 --exclude-gold
"""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotations import export
from annotations.selectors import ExportFilterError, ExportFilters, judgements_for_export


class Command(BaseCommand):
    help = "Export judgements (filtered) to JSONL, CSV or Parquet, with NAME.card.json next to the file."

    def add_arguments(self, parser) -> None:
        parser.add_argument("output", type=Path, help="file to write; replaced atomically")
        parser.add_argument("--format", choices=export.FORMATS, help="default: from the file suffix")
        parser.add_argument("--date-from", help="ISO date or datetime, inclusive")
        parser.add_argument("--date-to", help="ISO date (whole day included) or datetime (exclusive)")
        parser.add_argument("--annotator", action="append", type=int, default=[], help="user id; repeatable")
        parser.add_argument("--proposed-by", action="append", default=[], help="Comparison.proposed_by; repeatable")
        parser.add_argument("--edit-source", action="append", default=[], help="Edit.source of A or B; repeatable")
        parser.add_argument("--min-confidence", type=int, help="1..5")
        parser.add_argument("--min-gold-accuracy", type=float, help="drop annotators below this gold accuracy (0..1)")
        parser.add_argument("--exclude-gold", action="store_true", help="drop judgements on gold comparisons")
        parser.add_argument("--chunk-size", type=int, default=export.DEFAULT_CHUNK_SIZE)
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, **options) -> None:
        output: Path = options["output"]
        fmt = options["format"] or output.suffix.lstrip(".")
        try:
            export.check_format(fmt)
            filters = ExportFilters.parse(
                {
                    "date_from": options["date_from"],
                    "date_to": options["date_to"],
                    "annotators": options["annotator"],
                    "proposed_by": options["proposed_by"],
                    "edit_sources": options["edit_source"],
                    "min_confidence": options["min_confidence"],
                    "min_gold_accuracy": options["min_gold_accuracy"],
                    "exclude_gold": options["exclude_gold"],
                }
            )
        except (ExportFilterError, export.ExportError) as exc:
            raise CommandError(str(exc)) from exc
        total = judgements_for_export(filters)[0].count()
        with tqdm(total=total, unit="rows", disable=options["no_progress"], file=self.stderr._out) as bar:
            result = export.export_to_file(
                filters=filters, fmt=fmt, path=output, chunk_size=options["chunk_size"], on_rows=bar.update
            )
        self.stdout.write(f"wrote {result.n_rows} rows to {result.path} and the card to {result.card_path}")
