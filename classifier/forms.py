"""The upload form of the HTML flow: one image, or several for a batch."""

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

ACCEPT = "image/jpeg,image/png,image/webp,.jpg,.jpeg,.png,.webp"


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A file field that accepts several files (the pattern from Django's documentation)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ACCEPT}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single_clean = super().clean
        files = data if isinstance(data, (list, tuple)) else [data] if data else []
        if not files and self.required:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        return [single_clean(f, initial) for f in files]


class UploadForm(forms.Form):
    image = MultipleFileField(
        label=_("Dermatoscopic image(s)"),
        allow_empty_file=True,  # an empty file is that item's error in a batch, not the whole batch's
        error_messages={"required": _("Choose an image file to analyse.")},
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["image"].help_text = _(
            "JPG, PNG or WebP, up to %(mb)s MB each. Select up to %(n)s images to analyse them as a batch."
        ) % {"mb": f"{settings.DERMAI_MAX_UPLOAD_MB:g}", "n": settings.DERMAI_MAX_BATCH_FILES}
