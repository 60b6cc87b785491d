"""Admin-managed content about the seven lesion classes. No model stores uploads or predictions."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from ml import CLASS_CODES


class LesionClass(models.Model):
    """One of the seven ISIC 2018 diagnoses, with the plain-language text shown to visitors."""

    class Category(models.TextChoices):
        BENIGN = "benign", _("Benign")
        MALIGNANT = "malignant", _("Malignant")
        PRECANCEROUS = "precancerous", _("Precancerous")

    code = models.CharField(max_length=5, unique=True, choices=[(c, c) for c in CLASS_CODES])
    name = models.CharField(max_length=80)
    category = models.CharField(max_length=12, choices=Category.choices)
    description = models.TextField(help_text=_("Plain language, shown on every result page."))
    reference_url = models.URLField(blank=True, help_text=_("Optional link to a trustworthy patient resource."))

    class Meta:
        ordering = ("code",)
        verbose_name = _("lesion class")
        verbose_name_plural = _("lesion classes")

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"


class LesionClassTranslation(models.Model):
    """The name and description of a class in another language than the default (English)."""

    lesion_class = models.ForeignKey(LesionClass, on_delete=models.CASCADE, related_name="translations")
    language = models.CharField(
        max_length=8, choices=[(code, name) for code, name in settings.LANGUAGES if code != settings.LANGUAGE_CODE]
    )
    name = models.CharField(max_length=80)
    description = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("lesion_class", "language"), name="one_translation_per_language")
        ]
        verbose_name = _("translation")
        verbose_name_plural = _("translations")

    def __str__(self) -> str:
        return f"{self.lesion_class.code} ({self.language})"
