import pytest
import torch
from PIL import Image

from ml.checkpoint import load_checkpoint, record_triage, save_checkpoint
from ml.fullres import fullres_report, main
from ml.model import SimpleBNConv
from ml.preprocessing import PreprocessConfig
from ml.resolutions import RESOLUTIONS

pytestmark = pytest.mark.slow  # the site's whole path, three resolutions of each image


@pytest.fixture
def folder(tmp_path, examples_dir):
    """Two nevi and two melanomas of the examples, upscaled to PH2's 767×576."""
    folder = tmp_path / "fullres"
    (folder / "images").mkdir(parents=True)
    rows = ["image,isic2018_class"]
    for path in sorted((examples_dir / "images").glob("*.jpg"))[:4]:
        Image.open(path).resize((767, 576)).save(folder / "images" / path.name, quality=95)
        rows.append(f"{path.stem},{'MEL' if len(rows) % 2 else 'NV'}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    torch.manual_seed(0)
    save_checkpoint(path, model=SimpleBNConv(), preprocess=PreprocessConfig())
    return path


def test_the_report_gives_every_resolution_its_refusals_auc_and_referrals(folder, checkpoint):
    # Refer everything: every melanoma and every nevus is referred, whatever the untrained model says.
    record_triage(checkpoint, triage={"policy": {"refer_at": 0.0, "inconclusive_below": 0.5}, "measured": {}})
    report = fullres_report(checkpoint=checkpoint, data=folder)
    assert [row["resolution"] for row in report["rows"]] == [name for name, _ in RESOLUTIONS]
    for row in report["rows"]:
        assert row["images"] == 4
        assert {code: counts["images"] for code, counts in row["per_class"].items()} == {"MEL": 2, "NV": 2}
        assert 0 <= row["melanoma_vs_nevus_auc"] <= 1
        assert row["melanomas_referred"] == row["nevi_referred"] == 1.0


def test_referrals_follow_the_recorded_policy(folder, checkpoint):
    record_triage(checkpoint, triage={"policy": {"refer_at": 1.01, "inconclusive_below": 0.5}, "measured": {}})
    rows = fullres_report(checkpoint=checkpoint, data=folder)["rows"]
    assert all(row["melanomas_referred"] == row["nevi_referred"] == 0.0 for row in rows)


def test_the_command_prints_a_row_per_resolution(folder, checkpoint, capsys):
    assert main(["--data", str(folder), "--checkpoint", str(checkpoint)]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name, _ in RESOLUTIONS)


def test_the_command_records_the_report_without_the_machines_paths(folder, checkpoint, capsys):
    record_triage(checkpoint, triage={"policy": {"refer_at": 0.0, "inconclusive_below": 0.5}, "measured": {}})
    assert main(["--data", str(folder), "--checkpoint", str(checkpoint), "--record"]) == 0
    recorded = load_checkpoint(checkpoint).meta["metrics"]["fullres"]
    assert recorded["data"] == "fullres" and "checkpoint" not in recorded
    assert str(folder.parent) not in repr(recorded)
    native = recorded["rows"][0]
    assert native["resolution"] == "native" and native["melanomas_referred"] == 1.0


def test_the_command_names_a_missing_labels_file(tmp_path, checkpoint, capsys):
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path), "--checkpoint", str(checkpoint)])
    assert "no labels.csv" in capsys.readouterr().err
