import csv
import io
import shutil

import pytest
import torch
from PIL import Image

from ml import CLASS_CODES
from ml.isic_csv import IsicCsvWriter, image_ids


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


def test_file_names_that_share_a_stem_keep_their_extension_and_twins_get_a_suffix():
    names = ["a.jpg", "a.png", "b.jpg", "c.jpg", "c.jpg", "c.jpg (2)", "noext"]
    ids = image_ids(names)
    assert ids == ["a.jpg", "a.png", "b", "c.jpg", "c.jpg (3)", "c.jpg (2)", "noext"]
    assert len(set(ids)) == len(names)  # one row per file, never two alike


def test_the_semicolon_file_has_decimal_commas_in_every_number_and_keeps_integers():
    buffer = io.StringIO()
    writer = IsicCsvWriter(buffer, extra=["risk", "refer", "note"], delimiter=";", decimal=",")
    writer.row("ISIC_1", [0.5, 0.25, 0.125, 0.0625, 0.0625, 0.0, 0.0], 0.875, 1, "a; b, c")
    header, row = list(csv.reader(io.StringIO(buffer.getvalue()), delimiter=";"))
    assert header == ["image", *CLASS_CODES, "risk", "refer", "note"]
    assert row[1:4] == ["0,500000", "0,250000", "0,125000"]
    assert row[-3:] == ["0,875000", "1", "a; b, c"]  # text with either separator stays one cell


def test_the_delimiter_and_the_decimal_mark_must_differ():
    with pytest.raises(ValueError, match="must differ"):
        IsicCsvWriter(io.StringIO(), delimiter=",", decimal=",")


def test_the_command_line_writes_one_row_per_file_when_two_share_a_name(tmp_path, examples_dir):
    from ml.checkpoint import save_checkpoint
    from ml.model import SimpleBNConv
    from ml.predict import predict_to_csv
    from ml.preprocessing import PreprocessConfig

    checkpoint = tmp_path / "untrained.pt"
    torch.manual_seed(0)
    save_checkpoint(checkpoint, model=SimpleBNConv(), preprocess=PreprocessConfig())
    folder = tmp_path / "images"
    folder.mkdir()
    lesion = next((examples_dir / "images").iterdir())
    shutil.copy(lesion, folder / "a.jpg")
    Image.open(lesion).save(folder / "a.png")
    out = tmp_path / "predictions.csv"
    assert predict_to_csv([folder], checkpoint=checkpoint, out=out) == (2, 0)
    with out.open(newline="") as f:
        assert sorted(row["image"] for row in csv.DictReader(f)) == ["a.jpg", "a.png"]
