"""AKIEC's seeded name and description also cover squamous cell carcinoma.

Models trained on ISIC 2019 images learn AKIEC from actinic keratoses and squamous cell carcinomas
(invasive ones included), not only ISIC 2018's intraepithelial carcinoma. Texts an admin has edited
are left as they are.
"""

from django.db import migrations

OLD = {
    "en": (
        "Actinic keratosis / intraepithelial carcinoma",
        "Rough, scaly patches caused by long-term sun damage (actinic keratosis) and their early, "
        "surface-only cancerous form (Bowen's disease). A small share can progress to squamous cell "
        "carcinoma, so they are usually treated.",
    ),
    "es": (
        "Queratosis actínica / carcinoma intraepitelial",
        "Placas ásperas y escamosas causadas por el daño solar acumulado (queratosis actínica) y su forma "
        "cancerosa temprana y superficial (enfermedad de Bowen). Una pequeña parte puede evolucionar a "
        "carcinoma espinocelular, por eso suelen tratarse.",
    ),
}
NEW = {
    "en": (
        "Actinic keratosis / squamous cell carcinoma",
        "Rough, scaly patches caused by long-term sun damage (actinic keratosis), their early, "
        "surface-only cancerous form (Bowen's disease) and squamous cell carcinoma, the skin cancer a "
        "small share of them becomes. Actinic keratoses are usually treated; a squamous cell carcinoma "
        "needs treatment because it can grow deep and, rarely, spread.",
    ),
    "es": (
        "Queratosis actínica / carcinoma espinocelular",
        "Placas ásperas y escamosas causadas por el daño solar acumulado (queratosis actínica), su forma "
        "cancerosa temprana y superficial (enfermedad de Bowen) y el carcinoma espinocelular, el cáncer de "
        "piel en que se convierte una pequeña parte de ellas. Las queratosis actínicas suelen tratarse; un "
        "carcinoma espinocelular necesita tratamiento porque puede crecer en profundidad y, rara vez, "
        "extenderse.",
    ),
}


def replace(apps, before: dict, after: dict) -> None:
    LesionClass = apps.get_model("classifier", "LesionClass")
    Translation = apps.get_model("classifier", "LesionClassTranslation")
    LesionClass.objects.filter(code="AKIEC", name=before["en"][0], description=before["en"][1]).update(
        name=after["en"][0], description=after["en"][1]
    )
    Translation.objects.filter(
        lesion_class__code="AKIEC", language="es", name=before["es"][0], description=before["es"][1]
    ).update(name=after["es"][0], description=after["es"][1])


class Migration(migrations.Migration):
    dependencies = [("classifier", "0006_drop_display_order")]
    operations = [
        migrations.RunPython(lambda apps, _: replace(apps, OLD, NEW), lambda apps, _: replace(apps, NEW, OLD))
    ]
