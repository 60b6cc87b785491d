"""Seed Spanish names and descriptions of the seven classes (editable in the admin)."""

from django.db import migrations

SPANISH = {
    "MEL": (
        "Melanoma",
        "Un cáncer de las células que producen el pigmento de la piel. Puede extenderse a otros órganos, "
        "pero si se detecta pronto suele curarse extirpándolo. Son señales de alarma una mancha nueva, que "
        "cambia, asimétrica, de borde o color irregular, o distinta de los demás lunares de la persona.",
    ),
    "NV": (
        "Nevus melanocítico",
        "Un lunar común: un grupo inofensivo de células pigmentadas. La mayoría de los adultos tiene muchos. "
        "Los lunares suelen mantenerse estables durante años; uno que cambia de tamaño, forma o color "
        "merece que lo vea un médico.",
    ),
    "BCC": (
        "Carcinoma basocelular",
        "El cáncer de piel más frecuente, relacionado con la exposición al sol. Crece despacio y muy rara "
        "vez se extiende, pero sin tratamiento puede dañar la piel de alrededor. A menudo parece un bulto "
        "perlado o una herida que no cicatriza.",
    ),
    "AKIEC": (
        "Queratosis actínica / carcinoma intraepitelial",
        "Placas ásperas y escamosas causadas por el daño solar acumulado (queratosis actínica) y su forma "
        "cancerosa temprana y superficial (enfermedad de Bowen). Una pequeña parte puede evolucionar a "
        "carcinoma espinocelular, por eso suelen tratarse.",
    ),
    "BKL": (
        "Queratosis benigna",
        "Un grupo de lesiones inofensivas: queratosis seborreicas (manchas de aspecto «pegado»), lentigos "
        "solares y queratosis liquenoides. Algunas se parecen al melanoma, por eso a veces se examinan o "
        "se extirpan.",
    ),
    "DF": (
        "Dermatofibroma",
        "Un bulto firme, frecuente e inofensivo en la piel, a menudo en las piernas, a veces tras una "
        "pequeña herida o picadura. Se hunde al pellizcarlo y normalmente no necesita tratamiento.",
    ),
    "VASC": (
        "Lesión vascular",
        "Lesiones formadas por pequeños vasos sanguíneos, como los angiomas rubí, los angioqueratomas y los "
        "granulomas piógenos. Son rojas, moradas o azuladas y casi siempre inofensivas.",
    ),
}


def seed(apps, schema_editor):
    LesionClass = apps.get_model("classifier", "LesionClass")
    Translation = apps.get_model("classifier", "LesionClassTranslation")
    for lesion_class in LesionClass.objects.filter(code__in=SPANISH):
        name, description = SPANISH[lesion_class.code]
        Translation.objects.update_or_create(
            lesion_class=lesion_class, language="es", defaults={"name": name, "description": description}
        )


def unseed(apps, schema_editor):
    apps.get_model("classifier", "LesionClassTranslation").objects.filter(language="es").delete()


class Migration(migrations.Migration):
    dependencies = [("classifier", "0003_lesion_class_translation")]
    operations = [migrations.RunPython(seed, unseed)]
