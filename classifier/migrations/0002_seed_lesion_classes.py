"""Seed the seven ISIC 2018 lesion classes with plain-language descriptions (editable in the admin)."""

from django.db import migrations

LESION_CLASSES = [
    {
        "code": "MEL",
        "name": "Melanoma",
        "category": "malignant",
        "description": (
            "A cancer of the pigment-producing cells of the skin. It can spread to other organs, but "
            "when found early it is usually cured by removing it. Warning signs include a spot that is "
            "new, changing, asymmetric, irregular in border or colour, or different from a person's "
            "other moles."
        ),
        "reference_url": "https://dermnetnz.org/topics/melanoma",
    },
    {
        "code": "NV",
        "name": "Melanocytic nevus",
        "category": "benign",
        "description": (
            "A common mole: a harmless cluster of pigment cells. Most adults have many. Moles usually "
            "stay stable for years; one that changes in size, shape or colour deserves a doctor's look."
        ),
        "reference_url": "https://dermnetnz.org/topics/melanocytic-naevus",
    },
    {
        "code": "BCC",
        "name": "Basal cell carcinoma",
        "category": "malignant",
        "description": (
            "The most common skin cancer, linked to sun exposure. It grows slowly and very rarely "
            "spreads, but it can damage the surrounding skin if left untreated. It often looks like a "
            "pearly bump or a sore that does not heal."
        ),
        "reference_url": "https://dermnetnz.org/topics/basal-cell-carcinoma",
    },
    {
        "code": "AKIEC",
        "name": "Actinic keratosis / intraepithelial carcinoma",
        "category": "precancerous",
        "description": (
            "Rough, scaly patches caused by long-term sun damage (actinic keratosis) and their early, "
            "surface-only cancerous form (Bowen's disease). A small share can progress to squamous cell "
            "carcinoma, so they are usually treated."
        ),
        "reference_url": "https://dermnetnz.org/topics/actinic-keratosis",
    },
    {
        "code": "BKL",
        "name": "Benign keratosis",
        "category": "benign",
        "description": (
            "A group of harmless growths: seborrheic keratoses ('age spots' with a stuck-on look), "
            "solar lentigines and lichen-planus-like keratoses. Some can look like melanoma, which is why "
            "they are sometimes examined or removed."
        ),
        "reference_url": "https://dermnetnz.org/topics/seborrhoeic-keratosis",
    },
    {
        "code": "DF",
        "name": "Dermatofibroma",
        "category": "benign",
        "description": (
            "A common, harmless firm bump in the skin, often on the legs, sometimes after a small injury "
            "or insect bite. It dimples inward when pinched and usually needs no treatment."
        ),
        "reference_url": "https://dermnetnz.org/topics/dermatofibroma",
    },
    {
        "code": "VASC",
        "name": "Vascular lesion",
        "category": "benign",
        "description": (
            "Growths made of small blood vessels, such as cherry angiomas, angiokeratomas and pyogenic "
            "granulomas. They are red, purple or blue and almost always harmless."
        ),
        "reference_url": "https://dermnetnz.org/topics/cherry-angioma",
    },
]


def seed(apps, schema_editor):
    LesionClass = apps.get_model("classifier", "LesionClass")
    # display_order existed until migration 0006; the browser tests seed today's model with this too.
    has_order = any(f.name == "display_order" for f in LesionClass._meta.get_fields())
    for order, fields in enumerate(LESION_CLASSES, start=1):
        defaults = {**fields, "display_order": order} if has_order else fields
        LesionClass.objects.update_or_create(code=fields["code"], defaults=defaults)


def unseed(apps, schema_editor):
    apps.get_model("classifier", "LesionClass").objects.filter(code__in=[c["code"] for c in LESION_CLASSES]).delete()


class Migration(migrations.Migration):
    dependencies = [("classifier", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
