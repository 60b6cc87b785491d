"""DRF serializers: the prediction inputs, and the shapes of every JSON answer (for the schema too)."""

import base64

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from classifier.models import LesionClass, safe_link
from classifier.services import BatchItem, PredictionResult


class PredictionInputSerializer(serializers.Serializer):
    image = serializers.FileField(
        allow_empty_file=True,  # read as any other unreadable image: invalid_image, as the page says it
        help_text=_("A dermatoscopic photo: JPEG, PNG or WebP."),
    )


class PredictionQuerySerializer(serializers.Serializer):
    explain = serializers.BooleanField(default=False, help_text=_("Add a Grad-CAM overlay (PNG)."))


class BatchInputSerializer(serializers.Serializer):
    images = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),  # an empty file is that item's error, not the batch's
        allow_empty=False,
        min_length=1,  # for the schema (minItems): an empty list is no field at all in multipart, missing_file
        help_text=_("Up to DERMAI_MAX_BATCH_FILES photos (20 by default); repeat the field once per file."),
    )


class AnswerSerializer(serializers.Serializer):
    """A whole answer of the API. Its ``disclaimer`` is declared here for the schema; the renderer
    adds it to every answer alike (``classifier.renderers``)."""

    disclaimer = serializers.CharField(
        read_only=True, help_text=_("For education and research only; not a medical device.")
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


class LesionClassListSerializer(AnswerSerializer):
    classes = LesionClassSerializer(many=True)


class ModelSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()
    sha256 = serializers.CharField()


class RecordSerializer(serializers.Serializer):
    """A record read back from a checkpoint: the keys it holds (older checkpoints hold fewer), none made up."""

    def to_representation(self, instance: dict) -> dict:
        return {key: value for key, value in super().to_representation(instance).items() if key in instance}


class PreprocessingSerializer(serializers.Serializer):
    """The checkpoint's ``ml.preprocessing.PreprocessConfig``."""

    size = serializers.IntegerField()
    source_short_side = serializers.IntegerField()
    colour_constancy = serializers.CharField()
    shades_of_gray_power = serializers.IntegerField()
    mean = serializers.ListField(child=serializers.FloatField())
    std = serializers.ListField(child=serializers.FloatField())


class CalibrationSerializer(serializers.Serializer):
    method = serializers.CharField()
    temperature = serializers.FloatField()
    ece_before = serializers.FloatField(allow_null=True, help_text=_("Over all validation sets pooled."))
    ece_after = serializers.FloatField(allow_null=True)


class TriagePolicySerializer(serializers.Serializer):
    refer_at = serializers.FloatField()
    inconclusive_below = serializers.FloatField()


class TriageMeasuredSerializer(RecordSerializer, TriagePolicySerializer):
    """What a policy does on held-out validation lesions (``ml.triage.measure_policy``)."""

    refer_at = serializers.FloatField(required=False)
    inconclusive_below = serializers.FloatField(required=False)
    images = serializers.IntegerField(required=False)
    sensitivity = serializers.FloatField(required=False, allow_null=True)
    specificity = serializers.FloatField(required=False, allow_null=True)
    coverage = serializers.FloatField(required=False, allow_null=True)
    selective_accuracy = serializers.FloatField(required=False, allow_null=True)
    accuracy_inconclusive = serializers.FloatField(required=False, allow_null=True)


class FullresReferralSerializer(serializers.Serializer):
    data = serializers.CharField(help_text=_("The folder of full-resolution images, e.g. ph2-fullres."))
    melanomas = serializers.IntegerField()
    melanomas_referred = serializers.FloatField()
    melanomas_sent = serializers.IntegerField()
    nevi = serializers.IntegerField()
    nevi_referred = serializers.FloatField(allow_null=True)
    nevi_sent = serializers.IntegerField(allow_null=True)
    melanoma_vs_nevus_auc = serializers.FloatField(allow_null=True)


class TriageSerializer(serializers.Serializer):
    risk = serializers.CharField()
    policy = TriagePolicySerializer()
    measured = TriageMeasuredSerializer(help_text=_("Empty for a checkpoint without a measured policy."))
    measured_by_set = serializers.DictField(child=TriageMeasuredSerializer())
    measured_fullres = FullresReferralSerializer(
        allow_null=True,
        help_text=_(
            "What the policy referred of full-resolution images from another hospital (python -m ml.fullres "
            "--record), at their own size; null where not recorded."
        ),
    )


class RefusalCountSerializer(serializers.Serializer):
    images = serializers.IntegerField()
    refused = serializers.IntegerField()


class GateRowSerializer(RefusalCountSerializer):
    set = serializers.CharField()
    dermatoscopic = serializers.BooleanField()
    refused_share = serializers.FloatField()
    per_class = serializers.DictField(child=RefusalCountSerializer(), required=False)


class GateSerializer(serializers.Serializer):
    threshold = serializers.FloatField()
    refused = GateRowSerializer(many=True)
    max_refusal = serializers.FloatField(allow_null=True)
    lent_by = serializers.CharField(
        allow_null=True,
        help_text=_("The checkpoint whose gate this model is served with (its model runs too); null for its own gate."),
    )


class ClassMetricsSerializer(serializers.Serializer):
    precision = serializers.FloatField()
    recall = serializers.FloatField()
    f1 = serializers.FloatField()
    auc = serializers.FloatField()
    support = serializers.IntegerField()


class AbstentionSerializer(serializers.Serializer):
    threshold = serializers.FloatField()
    coverage = serializers.FloatField()
    accuracy = serializers.FloatField()
    balanced_accuracy = serializers.FloatField()
    classes = serializers.IntegerField()


class EvaluationSerializer(RecordSerializer):
    """One validation set's summary, as ``python -m ml.evaluate --record`` stored it (older checkpoints hold less)."""

    n = serializers.IntegerField(required=False)
    accuracy = serializers.FloatField(required=False)
    balanced_accuracy = serializers.FloatField(required=False)
    balanced_accuracy_ci95 = serializers.ListField(child=serializers.FloatField(), required=False)
    macro_auc = serializers.FloatField(required=False)
    malignant_auc = serializers.FloatField(required=False, allow_null=True)
    ece = serializers.FloatField(required=False)
    ece_uncalibrated = serializers.FloatField(required=False)
    temperature = serializers.FloatField(required=False)
    per_class = serializers.DictField(child=ClassMetricsSerializer(), required=False)
    confusion_matrix = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()), required=False
    )
    sources = serializers.ListField(child=serializers.CharField(), required=False)
    abstention = AbstentionSerializer(many=True, required=False)
    triage = TriageMeasuredSerializer(required=False)


class DataSerializer(RecordSerializer):
    """What the model was trained on; the folders it was read from stay on the machine that trained it."""

    sources = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        required=False,
        help_text=_("Images per class of each source."),
    )
    images = serializers.IntegerField(required=False)
    lesions = serializers.IntegerField(required=False)
    split = serializers.CharField(required=False)
    val_fraction = serializers.FloatField(required=False)
    split_seed = serializers.IntegerField(required=False)
    train_counts = serializers.DictField(child=serializers.IntegerField(), required=False)
    val_counts = serializers.DictField(child=serializers.IntegerField(), required=False)
    external_counts = serializers.DictField(child=serializers.IntegerField(), required=False)


class ModelDescriptionSerializer(ModelSerializer, AnswerSerializer):
    """The loaded model as ``/api/v1/model/`` describes it (``classifier.selectors.model_describe``)."""

    classes = serializers.ListField(child=serializers.CharField(), help_text=_("In ISIC 2018 order."))
    parameters = serializers.IntegerField()
    preprocessing = PreprocessingSerializer()
    calibration = CalibrationSerializer()
    uncertain_below = serializers.FloatField()
    triage = TriageSerializer()
    gate = GateSerializer(allow_null=True, help_text=_("Null for a checkpoint without an out-of-distribution gate."))
    metrics = serializers.DictField(child=EvaluationSerializer(), help_text=_("By validation set."))
    data = DataSerializer()


class ClassProbabilitySerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    category = serializers.ChoiceField(choices=LesionClass.Category.choices)
    probability = serializers.FloatField()


class RiskSerializer(serializers.Serializer):
    probability = serializers.FloatField(
        help_text=_("Calibrated P(MEL) + P(BCC) + P(AKIEC): signs of skin cancer or a precancer.")
    )
    refer = serializers.BooleanField(
        help_text=_("True when the risk reaches the threshold: show this lesion to a dermatologist.")
    )
    near = serializers.BooleanField(
        help_text=_(
            "True when the risk is below the threshold but at least half of it: too close to the line to reassure."
        )
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


class ResultSerializer(serializers.Serializer):
    """One classified image (a :class:`~classifier.services.PredictionResult`): the fields that the single
    answer and each file of a batch share, and that the batch CSV reads (``classifier.views.batch_csv``)."""

    prediction = ClassProbabilitySerializer()
    probabilities = ClassProbabilitySerializer(many=True, help_text=_("All seven classes in ISIC 2018 order."))
    uncertain = serializers.BooleanField(
        help_text=_("True when the top calibrated probability is below the threshold.")
    )
    risk = RiskSerializer()
    inconclusive = serializers.BooleanField(
        help_text=_("True when no class stands out enough to name one (rule and its accuracy: /api/v1/model/).")
    )


class ModelAnswerSerializer(AnswerSerializer):
    """An answer given by the loaded model, which it names first."""

    model = ModelSerializer()


class PredictionSerializer(ModelAnswerSerializer, ResultSerializer):
    """The answer for one image: the model, the result, and what only a single image gets."""

    explanation = serializers.SerializerMethodField(help_text=_("Only with ?explain=1."))
    elapsed_ms = serializers.FloatField(help_text=_("Time spent decoding, preprocessing and running the model."))

    @extend_schema_field(ExplanationSerializer(allow_null=True))
    def get_explanation(self, result: PredictionResult) -> dict | None:
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


class ErrorSerializer(AnswerSerializer):
    error = ErrorDetailSerializer()


class FileSerializer(serializers.Serializer):
    name = serializers.CharField(help_text=_("The uploaded file name."))


class BatchResultSerializer(FileSerializer, ResultSerializer):
    """A file of a batch that was classified: its name, then its result's fields."""

    def to_representation(self, item: BatchItem) -> dict:
        return {"name": item.name, **ResultSerializer(item.result, context=self.context).data}


class BatchErrorSerializer(FileSerializer):
    """A file of a batch that could not be classified: its name and its error, as a single image's."""

    error = ErrorDetailSerializer(help_text=_("Present instead of a result when the file was unusable."))

    def to_representation(self, item: BatchItem) -> dict:
        return {"name": item.name, "error": item.error.as_dict()}


class BatchSerializer(ModelAnswerSerializer):
    """The answer for a batch: the model, then one item per file in upload order, a result or an error."""

    results = serializers.SerializerMethodField()

    @extend_schema_field(
        PolymorphicProxySerializer(
            component_name="BatchItem",
            serializers=[BatchResultSerializer, BatchErrorSerializer],
            resource_type_field_name=None,
            many=True,
        )
    )
    def get_results(self, batch: dict) -> list[dict]:
        return [
            (BatchErrorSerializer if item.error is not None else BatchResultSerializer)(item, context=self.context).data
            for item in batch["results"]
        ]
