"""DRF serializers: the prediction input, and the shapes of every JSON answer (for the schema too)."""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from classifier.models import LesionClass
from classifier.services import DISCLAIMER
from classifier.uploads import max_upload_bytes, too_large_message


class PredictionInputSerializer(serializers.Serializer):
    image = serializers.FileField(
        help_text=_("A dermatoscopic photo: JPEG, PNG or WebP."),
    )

    def validate_image(self, image):
        if image.size > max_upload_bytes():
            raise serializers.ValidationError(too_large_message(), code="too_large")
        return image


class LesionClassSerializer(serializers.ModelSerializer):
    class Meta:
        model = LesionClass
        fields = ("code", "name", "category", "description", "reference_url")


class ModelSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()
    sha256 = serializers.CharField()


class ClassProbabilitySerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    category = serializers.CharField()
    probability = serializers.FloatField()


class PredictionSerializer(serializers.Serializer):
    model = ModelSerializer()
    prediction = ClassProbabilitySerializer()
    probabilities = ClassProbabilitySerializer(many=True, help_text=_("All seven classes in ISIC 2018 order."))
    uncertain = serializers.BooleanField(
        help_text=_("True when the top calibrated probability is below the threshold.")
    )
    disclaimer = serializers.SerializerMethodField()
    elapsed_ms = serializers.FloatField(help_text=_("Time spent decoding, preprocessing and running the model."))

    @extend_schema_field(OpenApiTypes.STR)
    def get_disclaimer(self, result) -> str:
        return str(DISCLAIMER)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
    disclaimer = serializers.CharField()


class LesionClassListSerializer(serializers.Serializer):
    classes = LesionClassSerializer(many=True)
    disclaimer = serializers.CharField()
