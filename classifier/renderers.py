"""The API's JSON renderer: DRF's, with the disclaimer on every answer it renders."""

from rest_framework import renderers

from classifier.errors import with_disclaimer


class JSONRenderer(renderers.JSONRenderer):
    """DRF's JSON renderer; each answer it renders carries the disclaimer, as every error does
    (:func:`classifier.errors.json_error`)."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict):
            data = with_disclaimer(data)
        return super().render(data, accepted_media_type, renderer_context)
