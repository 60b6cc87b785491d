"""The ISIC 2018 Task 3 CSV (``image,MEL,…,VASC``): one writer for the command line and the web batch."""

import csv
import itertools
from collections import Counter
from collections.abc import Sequence
from pathlib import PurePath
from typing import IO

from ml import CLASS_CODES

# A cell starting with one of these runs as a formula when a spreadsheet opens the file.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str) -> str:
    """A text cell that spreadsheets show as text, never run as a formula."""
    return "'" + value if value[:1] in FORMULA_STARTS else value


def image_ids(names: Sequence[str]) -> list[str]:
    """The ``image`` cell of each file name, one per file and never two alike.

    The name without its extension (the ISIC image id), unless two files share it (``a.jpg`` and
    ``a.png``): those keep their extension. Files with the very same name get " (2)", " (3)"… in order.
    """
    stems = [PurePath(name).stem for name in names]
    stem_counts = Counter(stems)
    wanted = [stem if stem_counts[stem] == 1 else name for stem, name in zip(stems, names)]
    taken, used, ids = set(wanted), set(), []  # a suffix must not take a name that a later file has as it is
    for cell in wanted:
        if cell in used:
            cell = next(f"{cell} ({n})" for n in itertools.count(2) if f"{cell} ({n})" not in taken)
            taken.add(cell)
        used.add(cell)
        ids.append(cell)
    return ids


class IsicCsvWriter:
    """Writes the header at once, then one row per image: its seven probabilities and any ``extra`` columns.

    A row without probabilities (a file that could not be classified) keeps its place with empty
    probability cells, so that every input is accounted for. Probabilities and any float among the
    extra cells are written with six decimals. ``delimiter=";"`` with ``decimal=","`` gives the
    file that a spreadsheet set to a decimal-comma locale (Spanish, French, German…) splits into columns.
    """

    def __init__(self, file: IO[str], *, extra: Sequence[str] = (), delimiter: str = ",", decimal: str = ".") -> None:
        if delimiter == decimal:
            raise ValueError(f"the delimiter and the decimal mark must differ, both are {delimiter!r}")
        self._writer = csv.writer(file, delimiter=delimiter)
        self._decimal = decimal
        self._extra = len(extra)
        self._writer.writerow(["image", *CLASS_CODES, *extra])

    def _number(self, value: float) -> str:
        return f"{value:.6f}".replace(".", self._decimal)

    def row(self, image: str, probabilities: Sequence[float] | None, *extra: object) -> None:
        if len(extra) != self._extra:
            raise ValueError(f"expected {self._extra} extra cells, got {len(extra)}")
        cells = [self._number(p) for p in probabilities] if probabilities is not None else [""] * len(CLASS_CODES)
        extras = [text_cell(v) if isinstance(v, str) else self._number(v) if isinstance(v, float) else v for v in extra]
        self._writer.writerow([text_cell(image), *cells, *extras])
