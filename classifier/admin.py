from django.conf import settings
from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from classifier.models import LesionClass, LesionClassTranslation
from ml import CLASS_CODES

admin.site.site_header = _("DermAI administration")
admin.site.site_title = _("DermAI administration")


class TranslationInline(admin.StackedInline):
    model = LesionClassTranslation
    extra = 0


@admin.register(LesionClass)
class LesionClassAdmin(admin.ModelAdmin):
    inlines = (TranslationInline,)
    list_display = ("code", "name", "category", "short_description", "translation_status")
    list_filter = ("category",)
    # Every language's text: "lunar" finds the nevus by its Spanish description.
    search_fields = ("code", "name", "description", "translations__name", "translations__description")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return super().get_queryset(request).prefetch_related("translations")

    def get_readonly_fields(self, request: HttpRequest, obj: LesionClass | None = None) -> tuple[str, ...]:
        # The code ties the row to the model's output and the category to the referral risk: once saved,
        # an edit could only make a page contradict itself (a green "Benign" beside "Melanoma").
        return ("code", "category") if obj is not None else ()

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Only to put back a class that is missing: each of the seven codes has one row.
        return super().has_add_permission(request) and LesionClass.objects.count() < len(CLASS_CODES)

    def has_delete_permission(self, request: HttpRequest, obj: LesionClass | None = None) -> bool:
        # Every result names one of the seven classes; without its row a page would show a bare code.
        return False

    @admin.display(description=_("description"))
    def short_description(self, obj: LesionClass) -> str:
        return obj.description if len(obj.description) <= 80 else obj.description[:77] + "…"

    @admin.display(description=_("translations"))
    def translation_status(self, obj: LesionClass) -> str:
        missing = obj.missing_languages()
        if not missing:
            return gettext("Complete")
        names = dict(settings.LANGUAGES)
        return gettext("Missing: %(languages)s") % {"languages": ", ".join(names[code] for code in missing)}
