from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class ClassifierConfig(AppConfig):
    name = "classifier"
    verbose_name = "Lesion classifier"

    def ready(self) -> None:
        from classifier.models import LesionClass, LesionClassTranslation
        from classifier.services import class_contents_forget

        for model in (LesionClass, LesionClassTranslation):
            post_save.connect(class_contents_forget, sender=model, dispatch_uid=f"forget-{model.__name__}")
            post_delete.connect(class_contents_forget, sender=model, dispatch_uid=f"forget-{model.__name__}-delete")
