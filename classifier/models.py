"""Admin-managed content about the seven lesion classes. No model stores uploads or predictions."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from ml import CLASS_CODES
from ml.triage import MALIGNANT_OR_PRECANCEROUS

# A reference link is http(s), never javascript:, data: or any other scheme that a page would run.
validate_link = URLValidator(schemes=["http", "https"])


def safe_link(url: str) -> str:
    """``url`` if it is an http(s) URL (``validate_link``), else "": pages and answers offer no other link."""
    try:
        validate_link(url)
    except ValidationError:
        return ""
    return url


class LesionClass(models.Model):
    """One of the seven ISIC 2018 diagnoses, with the plain-language text shown to visitors."""

    class Category(models.TextChoices):
        BENIGN = "benign", _("Benign")
        MALIGNANT = "malignant", _("Malignant")
        # AKIEC: actinic keratoses are precancers, but the class holds squamous cell carcinomas too.
        PRECANCEROUS_OR_MALIGNANT = "precancerous_or_malignant", _("Precancerous or malignant")

    code = models.CharField(
        _("code"),
        max_length=5,
        unique=True,
        choices=[(c, c) for c in CLASS_CODES],
        help_text=_("The ISIC 2018 diagnosis that the model answers with; fixed once saved."),
    )
    name = models.CharField(
        _("name"),
        max_length=80,
        help_text=_("In English; shown on result pages and in the API. Other languages: the translations below."),
    )
    category = models.CharField(
        _("category"),
        max_length=32,
        choices=Category.choices,
        help_text=_("Shown beside the name on every result; it must agree with the referral risk. Fixed once saved."),
    )
    description = models.TextField(
        _("description"), help_text=_("In English and plain language; shown on every result page.")
    )
    reference_url = models.URLField(
        _("reference link"),
        blank=True,
        validators=[validate_link],
        help_text=_("Optional link to a trustworthy patient resource, for every language."),
    )

    class Meta:
        ordering = ("code",)
        constraints = [
            # Saves that skip validation (the ORM, a data migration) cannot store another scheme either.
            models.CheckConstraint(
                condition=models.Q(reference_url="")
                | models.Q(reference_url__istartswith="http://")
                | models.Q(reference_url__istartswith="https://"),
                name="reference_url_http_or_https",
                violation_error_message=_("Enter an http:// or https:// address."),
            )
        ]
        verbose_name = _("lesion class")
        verbose_name_plural = _("lesion classes")

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"

    def clean(self) -> None:
        # The referral risk adds up MEL, BCC and AKIEC: one of them labelled benign (or another class
        # labelled malignant) would print a green "Benign" beside "Melanoma" on every result.
        counts_as_risk = self.code in MALIGNANT_OR_PRECANCEROUS
        if self.category and counts_as_risk == (self.category == self.Category.BENIGN):
            if counts_as_risk:
                message = _("%(code)s counts towards the referral risk: it cannot be benign.")
            else:
                message = _("%(code)s is left out of the referral risk: it must be benign.")
            raise ValidationError({"category": message % {"code": self.code}})

    def missing_languages(self) -> list[str]:
        """The language codes, English aside, without a complete name and description for this class.

        Reads ``translations`` once: a queryset that prefetched them answers without a query per class.
        """
        done = {t.language for t in self.translations.all() if t.name.strip() and t.description.strip()}
        return [code for code, _name in settings.LANGUAGES if code != settings.LANGUAGE_CODE and code not in done]


class LesionClassTranslation(models.Model):
    """The name and description of a class in another language than the default (English)."""

    lesion_class = models.ForeignKey(LesionClass, on_delete=models.CASCADE, related_name="translations")
    language = models.CharField(
        _("language"),
        max_length=8,
        choices=[(code, name) for code, name in settings.LANGUAGES if code != settings.LANGUAGE_CODE],
        help_text=_("The language of this name and description."),
    )
    name = models.CharField(
        _("name"), max_length=80, help_text=_("The class name in this language; shown on result pages and in the API.")
    )
    description = models.TextField(
        _("description"),
        help_text=_(
            "In this language and plain language; shown on every result page. "
            "Without a translation, visitors read the English text."
        ),
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("lesion_class", "language"), name="one_translation_per_language")
        ]
        verbose_name = _("translation")
        verbose_name_plural = _("translations")

    def __str__(self) -> str:
        return f"{self.lesion_class.code} ({self.language})"
