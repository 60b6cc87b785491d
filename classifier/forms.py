"""The upload form of the HTML flow."""

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from classifier.uploads import max_upload_bytes, too_large_message

ACCEPT = "image/jpeg,image/png,image/webp,.jpg,.jpeg,.png,.webp"


class UploadForm(forms.Form):
    image = forms.FileField(
        label=_("Dermatoscopic image"),
        widget=forms.ClearableFileInput(attrs={"accept": ACCEPT}),
        error_messages={"required": _("Choose an image file to analyse."), "empty": _("The file is empty.")},
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["image"].help_text = _("JPG, PNG or WebP, up to %(mb)s MB.") % {
            "mb": f"{settings.DERMAI_MAX_UPLOAD_MB:g}"
        }

    def clean_image(self):
        image = self.cleaned_data["image"]
        if image.size > max_upload_bytes():
            raise forms.ValidationError(too_large_message(), code="too_large")
        return image
