from django.contrib import admin
from django.db import models

from classifier.models import LesionClass, LesionClassTranslation


class TranslationInline(admin.StackedInline):
    model = LesionClassTranslation
    extra = 0


@admin.register(LesionClass)
class LesionClassAdmin(admin.ModelAdmin):
    inlines = (TranslationInline,)
    list_display = ("code", "name", "category", "short_description")
    list_filter = ("category",)
    search_fields = ("code", "name", "description")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="description")
    def short_description(self, obj: LesionClass) -> str:
        return obj.description if len(obj.description) <= 80 else obj.description[:77] + "…"
