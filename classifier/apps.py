from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_delete, post_save
from django.utils.translation import gettext_lazy as _


class ClassifierConfig(AppConfig):
    name = "classifier"
    verbose_name = _("Lesion classifier")

    def ready(self) -> None:
        from classifier.checks import class_texts_check
        from classifier.models import LesionClass, LesionClassTranslation
        from classifier.services import class_contents_forget

        for model in (LesionClass, LesionClassTranslation):
            post_save.connect(class_contents_forget, sender=model, dispatch_uid=f"forget-{model.__name__}")
            post_delete.connect(class_contents_forget, sender=model, dispatch_uid=f"forget-{model.__name__}-delete")
        checks.register(class_texts_check, checks.Tags.database)
