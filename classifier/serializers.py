"""DRF serializers: the prediction inputs, and the shapes of every JSON answer (for the schema too)."""

import base64

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from classifier.errors import DISCLAIMER, error_body
from classifier.models import LesionClass, safe_link
from classifier.services import PredictionResult


class PredictionInputSerializer(serializers.Serializer):
    image = serializers.FileField(help_text=_("A dermatoscopic photo: JPEG, PNG or WebP."))


class PredictionQuerySerializer(serializers.Serializer):
    explain = serializers.BooleanField(default=False, help_text=_("Add a Grad-CAM overlay (PNG)."))


class BatchInputSerializer(serializers.Serializer):
    images = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),  # an empty file is that item's error, not the batch's
        allow_empty=False,
        help_text=_("Up to DERMAI_MAX_BATCH_FILES photos (20 by default); repeat the field once per file."),
    )


class LinkField(serializers.CharField):
    """A URL offered as a link: empty unless it is http(s) (``classifier.models.safe_link``)."""

    def to_representation(self, value) -> str:
        return safe_link(str(value))


class LesionClassSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    category = serializers.ChoiceField(choices=LesionClass.Category.choices)
    description = serializers.CharField()
    reference_url = LinkField(help_text=_("An http(s) link, or empty."))


class LesionClassListSerializer(serializers.Serializer):
    classes = LesionClassSerializer(many=True)
    disclaimer = serializers.CharField()


class ModelSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()
    sha256 = serializers.CharField()


class ClassProbabilitySerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    category = serializers.CharField()
    probability = serializers.FloatField()


class RiskSerializer(serializers.Serializer):
    probability = serializers.FloatField(
        help_text=_("Calibrated P(MEL) + P(BCC) + P(AKIEC): signs of skin cancer or a precancer.")
    )
    refer = serializers.BooleanField(
        help_text=_("True when the risk reaches the threshold: show this lesion to a dermatologist.")
    )
    threshold = serializers.FloatField(
        help_text=_("The referral threshold, chosen on validation images for the stated sensitivity.")
    )
    sensitivity = serializers.FloatField(
        allow_null=True, help_text=_("Share of malignant and precancerous validation lesions it refers.")
    )
    specificity = serializers.FloatField(
        allow_null=True, help_text=_("Share of benign validation lesions it does not.")
    )


class ExplanationSerializer(serializers.Serializer):
    method = serializers.CharField(default="grad-cam")
    code = serializers.CharField(help_text=_("The class the heatmap explains: the predicted one."))
    overlay_png_base64 = serializers.CharField(help_text=_("PNG of the heatmap over the 224×224 model input."))


class PredictionSerializer(serializers.Serializer):
    model = ModelSerializer()
    prediction = ClassProbabilitySerializer()
    probabilities = ClassProbabilitySerializer(many=True, help_text=_("All seven classes in ISIC 2018 order."))
    uncertain = serializers.BooleanField(
        help_text=_("True when the top calibrated probability is below the threshold.")
    )
    risk = RiskSerializer()
    inconclusive = serializers.BooleanField(
        help_text=_("True when no class stands out enough to name one (rule and its accuracy: /api/v1/model/).")
    )
    explanation = serializers.SerializerMethodField(help_text=_("Only with ?explain=1."))
    disclaimer = serializers.SerializerMethodField()
    elapsed_ms = serializers.FloatField(help_text=_("Time spent decoding, preprocessing and running the model."))

    @extend_schema_field(ExplanationSerializer(allow_null=True))
    def get_explanation(self, result: PredictionResult) -> dict | None:
        return _explanation_data(result)

    @extend_schema_field(OpenApiTypes.STR)
    def get_disclaimer(self, result) -> str:
        return str(DISCLAIMER)


def _explanation_data(result: PredictionResult) -> dict[str, str] | None:
    if not result.heatmap_png:
        return None
    encoded = base64.b64encode(result.heatmap_png).decode("ascii")
    return {"method": "grad-cam", "code": result.prediction.code, "overlay_png_base64": encoded}


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    detail = serializers.CharField(
        required=False, help_text=_("For a refused photo (out_of_scope): why, in plain words, and what to do.")
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
    disclaimer = serializers.CharField()


class BatchItemSerializer(serializers.Serializer):
    name = serializers.CharField(help_text=_("The uploaded file name."))
    prediction = ClassProbabilitySerializer(source="result.prediction", required=False)
    probabilities = ClassProbabilitySerializer(source="result.probabilities", many=True, required=False)
    uncertain = serializers.BooleanField(source="result.uncertain", required=False)
    risk = RiskSerializer(source="result.risk", required=False)
    inconclusive = serializers.BooleanField(source="result.inconclusive", required=False)
    error = ErrorDetailSerializer(
        required=False, help_text=_("Present instead of a result when the file was unusable.")
    )

    def to_representation(self, item):
        if item.error is not None:
            return {
                "name": item.name,
                "error": error_body(item.error.code, item.error.message, item.error.detail)["error"],
            }
        return super().to_representation(item)


class BatchSerializer(serializers.Serializer):
    model = ModelSerializer()
    results = BatchItemSerializer(many=True)
    disclaimer = serializers.CharField()
