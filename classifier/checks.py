"""System checks on the admin-managed class texts: every class present, in every language."""

from django.conf import settings
from django.core import checks
from django.db import DatabaseError

from ml import CLASS_CODES


def class_texts_check(app_configs=None, databases=None, **kwargs) -> list[checks.CheckMessage]:
    """Warn about a class missing from the database or without a complete translation.

    A database check: ``manage.py migrate`` runs it, and ``manage.py check --database default``.
    Pages fall back to English for a missing translation and to the bare code for a missing class.
    """
    from classifier.models import LesionClass

    messages: list[checks.CheckMessage] = []
    names = dict(settings.LANGUAGES)
    for alias in databases or ():
        try:
            rows = {row.code: row for row in LesionClass.objects.using(alias).prefetch_related("translations")}
        except DatabaseError:  # before the first migrate: nothing to check yet
            continue
        for code in CLASS_CODES:
            row = rows.get(code)
            if row is None:
                messages.append(
                    checks.Warning(
                        f"lesion class {code} is missing from the database {alias!r}; result pages show its bare code",
                        hint="Add it back in the admin: Lesion classes, Add.",
                        obj=LesionClass,
                        id="classifier.W001",
                    )
                )
                continue
            for language in row.missing_languages():
                messages.append(
                    checks.Warning(
                        f"lesion class {code} has no complete {names[language]} ({language}) name and description; "
                        "visitors reading that language get the English text",
                        hint="Add the translation in the admin, in the class's translations.",
                        obj=row,
                        id="classifier.W002",
                    )
                )
    return messages
