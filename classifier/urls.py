from django.urls import path

from classifier import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("examples/<str:image_id>/", views.example, name="example"),
    path("about/", views.about, name="about"),
    path("model-card/", views.model_card, name="model-card"),
    path("model-card/experiments/", views.experiments, name="experiments"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("api/v1/predictions/", api.PredictionCreateView.as_view(), name="api-predictions"),
    path("api/v1/predictions/batch/", api.BatchPredictionCreateView.as_view(), name="api-batch"),
    path("api/v1/classes/", api.LesionClassListView.as_view(), name="api-classes"),
    path("api/v1/model/", api.ModelInfoView.as_view(), name="api-model"),
]
