"""AKIEC's category says it can be cancer: "precancerous" becomes "precancerous_or_malignant".

The class holds actinic keratoses (precancers) and squamous cell carcinomas (cancers), since models
learn it from ISIC 2019's AK and SCC images (migration 0007). No other category keeps the old value.
"""

from django.db import migrations, models


def recategorise(apps, before: str, after: str) -> None:
    apps.get_model("classifier", "LesionClass").objects.filter(category=before).update(category=after)


def forwards(apps, schema_editor):
    recategorise(apps, "precancerous", "precancerous_or_malignant")


def backwards(apps, schema_editor):
    recategorise(apps, "precancerous_or_malignant", "precancerous")


class Migration(migrations.Migration):
    dependencies = [("classifier", "0008_reference_url_http_or_https")]
    operations = [
        migrations.AlterField(
            model_name="lesionclass",
            name="category",
            field=models.CharField(
                choices=[
                    ("benign", "Benign"),
                    ("malignant", "Malignant"),
                    ("precancerous_or_malignant", "Precancerous or malignant"),
                ],
                max_length=32,
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
