import csv
import shutil

import pytest

from ml import CLASS_CODES
from ml.data import (
    DataError,
    Sample,
    class_counts,
    read_samples,
    read_sources,
    source_counts,
    split_by_lesion,
    split_sources,
)


def _samples(n_lesions: int = 300) -> list[Sample]:
    # Lesions with 1–3 images each, classes unevenly represented, as in HAM10000.
    samples = []
    for lesion in range(n_lesions):
        label = lesion % 7 if lesion % 3 else 1
        for image in range(1 + lesion % 3):
            samples.append(Sample(f"img{lesion}_{image}", f"lesion{lesion}", label, path=None))
    return samples


def test_split_never_puts_one_lesion_on_both_sides():
    train, val = split_by_lesion(_samples(), val_fraction=0.2, seed=1)
    assert not {s.lesion_id for s in train} & {s.lesion_id for s in val}
    assert len(train) + len(val) == len(_samples())


def test_split_is_stratified_and_seeded():
    samples = _samples()
    train, val = split_by_lesion(samples, val_fraction=0.2, seed=1)
    assert all(count > 0 for count in class_counts(val))
    assert all(count > 0 for count in class_counts(train))
    assert split_by_lesion(samples, val_fraction=0.2, seed=1) == (train, val)
    assert split_by_lesion(samples, val_fraction=0.2, seed=2) != (train, val)


def test_split_rejects_a_bad_fraction():
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_lesion(_samples(), val_fraction=1.5)


def test_reads_the_ham10000_layout(examples_dir):
    samples = read_samples(examples_dir)
    assert len(samples) == 14
    assert class_counts(samples) == [2] * 7
    assert all(s.lesion_id.startswith("HAM_") for s in samples)


def test_reads_the_official_two_folder_layout(examples_dir, tmp_path):
    images = sorted((examples_dir / "images").iterdir())
    for i, path in enumerate(images):
        part = tmp_path / f"HAM10000_images_part_{1 + i % 2}"
        part.mkdir(exist_ok=True)
        shutil.copy(path, part)
    shutil.copy(examples_dir / "HAM10000_metadata.csv", tmp_path)
    assert [s.image_id for s in read_samples(tmp_path)] == [s.image_id for s in read_samples(examples_dir)]


def test_reads_the_isic_2018_ground_truth_layout(examples_dir, tmp_path):
    reference = read_samples(examples_dir)
    shutil.copytree(examples_dir / "images", tmp_path / "ISIC2018_Task3_Training_Input")
    with open(tmp_path / "ISIC2018_Task3_Training_GroundTruth.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", *CLASS_CODES])
        for s in reference:
            writer.writerow([s.image_id, *("1.0" if i == s.label else "0.0" for i in range(7))])
    samples = read_samples(tmp_path)
    assert [(s.image_id, s.label) for s in samples] == [(s.image_id, s.label) for s in reference]
    with pytest.raises(DataError, match="14 images have no lesion_id"):
        split_by_lesion(samples)  # by image, one lesion's images could land on both sides
    with open(tmp_path / "ISIC2018_Task3_Training_LesionGroupings.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "lesion_id"])
        writer.writerows([s.image_id, s.lesion_id] for s in reference)
    assert [s.lesion_id for s in read_samples(tmp_path)] == [s.lesion_id for s in reference]


def test_missing_images_are_reported(examples_dir, tmp_path):
    shutil.copy(examples_dir / "HAM10000_metadata.csv", tmp_path)
    with pytest.raises(FileNotFoundError, match="14 labelled images are missing"):
        read_samples(tmp_path)


def test_reads_the_isic_2019_layout(isic2019_dir):
    samples = {s.image_id: s for s in read_samples(isic2019_dir)}
    assert "ISIC_9600000" not in samples  # UNK is dropped
    assert len(samples) == 80 + 6 + 4
    codes = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    expected = {"AK": "AKIEC", "SCC": "AKIEC"}
    for i in range(40):
        sample = samples[f"ISIC_99{i:03d}0"]
        assert CLASS_CODES[sample.label] == expected.get(codes[i % 8], codes[i % 8])
        assert sample.lesion_id == f"BCN_{i:07d}" and sample.source == "BCN_20000"
    archive = samples["ISIC_970000_downsampled"]
    assert archive.lesion_id == archive.image_id  # no lesion id: its own lesion
    assert archive.source == "ISIC archive"
    assert samples["ISIC_980000"].source == "MSK"


def test_split_sources_keeps_the_first_sources_split_and_holds_out_bcn_lesions(examples_dir, isic2019_dir):
    ham = read_samples(examples_dir)
    splits = split_sources(read_sources([examples_dir, isic2019_dir]), val_fraction=0.2, seed=0)
    assert (splits.train[: len(split_by_lesion(ham)[0])], splits.val) == split_by_lesion(ham)  # as without ISIC
    assert {s.source for s in splits.external} == {"BCN_20000"}
    external_lesions = {s.lesion_id for s in splits.external}
    assert external_lesions and not external_lesions & {s.lesion_id for s in splits.train}
    assert not {s.lesion_id for s in splits.val} & {s.lesion_id for s in splits.train}
    assert len(splits.train) + len(splits.val) + len(splits.external) == 14 + 90
    assert {"MSK", "ISIC archive"} <= {s.source for s in splits.train}


def test_source_counts_count_each_class_per_source(examples_dir, isic2019_dir):
    counts = source_counts(read_sources([examples_dir, isic2019_dir]))
    assert counts["HAM10000"] == dict.fromkeys(CLASS_CODES, 2)
    assert counts["BCN_20000"]["AKIEC"] == 20  # AK and SCC lesions, two images each
    assert sum(counts["ISIC archive"].values()) == 4


def test_the_same_image_in_two_folders_is_refused(examples_dir):
    with pytest.raises(DataError, match="occurs in more than one"):
        read_sources([examples_dir, examples_dir])
