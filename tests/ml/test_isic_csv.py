import csv
import io

import pytest

from ml import CLASS_CODES
from ml.isic_csv import IsicCsvWriter


def test_rows_keep_their_place_and_names_never_run_as_formulas():
    buffer = io.StringIO()
    writer = IsicCsvWriter(buffer, extra=["error"])
    writer.row("=HYPERLINK(1)", [1 / 7] * 7, "")
    writer.row("broken", None, "invalid_image")
    header, first, second = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert header == ["image", *CLASS_CODES, "error"]
    assert first[0] == "'=HYPERLINK(1)" and first[1] == "0.142857"
    assert second == ["broken", *[""] * 7, "invalid_image"]


def test_a_row_must_fill_every_extra_column():
    writer = IsicCsvWriter(io.StringIO(), extra=["a", "b"])
    with pytest.raises(ValueError, match="expected 2 extra cells"):
        writer.row("x", None, "only one")
