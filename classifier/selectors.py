"""Reads (HackSoft's selectors): what the loaded model says of itself, and the admin-managed texts.

Nothing here changes state; :mod:`classifier.services` holds the commands and
:mod:`classifier.lifecycle` loads the model.
"""

import csv
import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from classifier.lifecycle import ModelInfo, predictor_get
from classifier.models import LesionClass
from ml import CLASS_CODES
from ml.inference import Predictor
from ml.triage import recorded_policy


@dataclass(frozen=True)
class ClassContent:
    """The admin-managed text of one class, in the active language."""

    code: str
    name: str
    category: str
    category_label: str
    description: str
    reference_url: str


CLASS_CONTENTS_SECONDS = 60


CLASS_CONTENTS_KEY = "dermai:class-contents:{language}"


def model_info_get() -> ModelInfo:
    return predictor_get()[1]


def class_recalls_get() -> dict[str, float]:
    """Each class's recall on the loaded checkpoint's validation split (empty when not recorded)."""
    validation = model_info_get().meta["metrics"].get("evaluation", {}).get("validation", {})
    return {code: row["recall"] for code, row in validation.get("per_class", {}).items()}


def class_recalls_list() -> list[tuple[ClassContent, float]]:
    """Each class with the share of its validation images the model finds (recorded classes only)."""
    recalls = class_recalls_get()
    return [(content, recalls[code]) for code, content in class_contents_get().items() if code in recalls]


def triage_get() -> dict[str, Any]:
    """The loaded checkpoint's triage policy and what it measured, or the cautious unmeasured default;
    ``fullres``: what it referred of full-resolution images from another hospital, where recorded."""
    meta = model_info_get().meta
    policy, measured = recorded_policy(meta)
    return {"policy": policy, "measured": measured, "fullres": fullres_referrals(meta, refer_at=policy.refer_at)}


def learnt_from_imagenet(meta: dict[str, Any]) -> bool:
    """Whether a checkpoint's weights descend from ImageNet's: trained with ``--pretrained``, or an
    EfficientNet-Lite0 fine-tuned from another checkpoint (``--init``), as the project's only are."""
    training = meta.get("training") or {}
    return bool(training.get("pretrained")) or (meta.get("arch") == "EfficientNetLite0" and bool(training.get("init")))


def fullres_referrals(meta: dict[str, Any], *, refer_at: float) -> dict[str, Any] | None:
    """The native-resolution row of ``python -m ml.fullres --record``: how many of its melanomas and nevi
    the policy's line sends to a dermatologist (refused images counted as if answered, as the command
    counts them). None where not recorded, without melanomas, or recorded at another line than ``refer_at``."""
    report = meta.get("metrics", {}).get("fullres") or {}
    row = next((r for r in report.get("rows", []) if r.get("resolution") == "native"), None)
    if row is None or row.get("melanomas_referred") is None or report.get("refer_at") != refer_at:
        return None
    melanomas = row["per_class"]["MEL"]["images"]
    nevi = row["per_class"].get("NV", {}).get("images", 0)
    return {
        "data": report["data"],
        "melanomas": melanomas,
        "melanomas_referred": row["melanomas_referred"],
        "melanomas_sent": round(row["melanomas_referred"] * melanomas),
        "nevi": nevi,
        "nevi_referred": row["nevi_referred"] if nevi else None,
        "nevi_sent": round(row["nevi_referred"] * nevi) if nevi and row["nevi_referred"] is not None else None,
        "melanoma_vs_nevus_auc": row["melanoma_vs_nevus_auc"],
    }


def class_contents_get() -> dict[str, ClassContent]:
    """The admin-managed text of each class in the active language, by code, in ``CLASS_CODES`` order.

    A missing translation falls back to English; a class missing from the database to its code.
    Every result needs it, so it is cached; an admin edit clears the cache (``class_contents_forget``).
    """
    language = (get_language() or settings.LANGUAGE_CODE).split("-")[0]
    key = CLASS_CONTENTS_KEY.format(language=language)
    contents = cache.get(key)
    if contents is None:
        contents = _class_contents_query(language)
        cache.set(key, contents, CLASS_CONTENTS_SECONDS)
    return contents


def _class_contents_query(language: str) -> dict[str, ClassContent]:
    rows = {row.code: row for row in LesionClass.objects.prefetch_related("translations")}
    contents = {}
    for code in CLASS_CODES:
        row = rows.get(code)
        if row is None:
            contents[code] = ClassContent(code, code, "", "", "", "")
            continue
        translated = next((t for t in row.translations.all() if t.language == language), row)
        contents[code] = ClassContent(
            code=code,
            name=translated.name,
            category=row.category,
            category_label=str(row.get_category_display()),
            description=translated.description,
            reference_url=row.reference_url,
        )
    return contents


@dataclass(frozen=True)
class ExampleImage:
    """A committed example image and its ground-truth class."""

    image_id: str
    code: str
    static_path: str


@dataclass(frozen=True)
class ExampleCard:
    """An example as the home page shows it: the image and its class's name in the active language."""

    image_id: str
    code: str
    name: str
    static_path: str


@functools.cache
def examples_list() -> list[ExampleImage]:
    """The committed example images (one per class), with their ground-truth class."""
    with open(settings.DERMAI_EXAMPLES_DIR / "HAM10000_metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    first_per_class: dict[str, str] = {}
    for row in rows:
        first_per_class.setdefault(row["dx"].upper(), row["image_id"])
    return [
        ExampleImage(image_id=first_per_class[code], code=code, static_path=f"examples/{first_per_class[code]}.jpg")
        for code in CLASS_CODES
        if code in first_per_class
    ]


def example_cards_get() -> list[ExampleCard]:
    classes = class_contents_get()
    return [ExampleCard(e.image_id, e.code, classes[e.code].name, e.static_path) for e in examples_list()]


def gate_describe(predictor: Predictor) -> dict[str, Any] | None:
    """The out-of-distribution gate of the loaded model: its threshold and what it refused (None without one)."""
    if predictor.gate is None:
        return None
    report = predictor.gate.report
    return {
        "threshold": predictor.gate.threshold,
        "refused": report.get("rows", []),
        "max_refusal": report.get("max_refusal"),
        "lent_by": predictor.gate_from["file"] if predictor.gate_from else None,
    }


# The gate report's sets (ml.fit_gate), as the about page names them: dermatoscopic validation
# lesions by hospital, the kinds of non-dermatoscopic photos by folder prefix.
GATE_SET_LABELS = {
    "HAM10000 validation (report)": _("HAM10000 validation lesions (dermatoscopic)"),
    "other-hospital validation (report)": _("Barcelona validation lesions (dermatoscopic)"),
    "HAM10000 validation, as uploads (report)": _("HAM10000 validation lesions, re-saved as uploads of other sizes"),
    "other-hospital validation, as uploads (report)": _(
        "Barcelona validation lesions, re-saved as uploads of other sizes"
    ),
    "fullres": _("Full-resolution lesions from another hospital (PH2), at three sizes"),
    "clinical": _("Phone and clinic photos of skin lesions"),
    "natural": _("Everyday photos: clothing, scenes, food, objects"),
    "generated": _("Generated images: noise, documents, screenshots, flat colours"),
    "nearmiss": _("Textures that resemble skin"),
}


def gate_refusals_list(gate: dict[str, Any] | None) -> list[dict[str, Any]]:
    """What a gate (:func:`gate_describe`) refused, one row per kind of image, for people to read.

    The halves of the validation sets that chose the threshold are left out: only images that
    did not choose it measure it.
    """
    rows: dict[str, dict[str, Any]] = {}
    for row in (gate or {}).get("refused", []):
        key = row["set"] if row["set"] in GATE_SET_LABELS else row["set"].split("/")[0]
        if key not in GATE_SET_LABELS and row.get("dermatoscopic") and row["set"].endswith("(report)"):
            key = "fullres"  # ml.fit_gate --fullres: "<folder>, <resolution> (report)"
        if key not in GATE_SET_LABELS:
            continue  # a threshold half, or a kind this page does not name
        total = rows.setdefault(key, {"label": GATE_SET_LABELS[key], "images": 0, "refused": 0})
        total["images"] += row["images"]
        total["refused"] += row["refused"]
    return list(rows.values())


def model_describe() -> dict[str, Any]:
    """What the API and the about page say about the loaded model."""
    predictor, info = predictor_get()
    meta = info.meta
    triage = triage_get()
    return {
        "name": info.name,
        "version": info.version,
        "sha256": info.sha256,
        "classes": list(CLASS_CODES),
        "parameters": predictor.parameter_count,
        "preprocessing": meta["preprocessing"],
        "calibration": {
            "method": "temperature scaling on the validation sets",
            "temperature": info.temperature,
            "ece_before": meta["metrics"].get("ece_before"),
            "ece_after": meta["metrics"].get("ece_after"),
        },
        "uncertain_below": settings.DERMAI_UNCERTAIN_BELOW,
        "triage": {
            "risk": "P(MEL) + P(BCC) + P(AKIEC), calibrated",
            "policy": dataclasses.asdict(triage["policy"]),
            "measured": triage["measured"],
            # each validation set apart: one threshold can refer very differently at two hospitals
            "measured_by_set": meta["metrics"].get("triage", {}).get("measured_by_set", {}),
            "measured_fullres": triage["fullres"],
        },
        "gate": gate_describe(predictor),
        "metrics": meta["metrics"].get("evaluation", {}),
        "data": meta["data"],
    }
