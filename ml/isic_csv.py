"""The ISIC 2018 Task 3 CSV (``image,MEL,…,VASC``): one writer for the command line and the web batch."""

import csv
from collections.abc import Sequence
from typing import IO

from ml import CLASS_CODES

# A cell starting with one of these runs as a formula when a spreadsheet opens the file.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str) -> str:
    """A text cell that spreadsheets show as text, never run as a formula."""
    return "'" + value if value[:1] in FORMULA_STARTS else value


class IsicCsvWriter:
    """Writes the header at once, then one row per image: its seven probabilities and any ``extra`` columns.

    A row without probabilities (a file that could not be classified) keeps its place with empty
    probability cells, so that every input is accounted for.
    """

    def __init__(self, file: IO[str], *, extra: Sequence[str] = ()) -> None:
        self._writer = csv.writer(file)
        self._extra = len(extra)
        self._writer.writerow(["image", *CLASS_CODES, *extra])

    def row(self, image: str, probabilities: Sequence[float] | None, *extra: object) -> None:
        if len(extra) != self._extra:
            raise ValueError(f"expected {self._extra} extra cells, got {len(extra)}")
        cells = [f"{p:.6f}" for p in probabilities] if probabilities is not None else [""] * len(CLASS_CODES)
        extras = [text_cell(v) if isinstance(v, str) else v for v in extra]
        self._writer.writerow([text_cell(image), *cells, *extras])
