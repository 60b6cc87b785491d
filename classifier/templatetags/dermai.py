"""Template filters of the view layer."""

import base64

from django import template

register = template.Library()


@register.filter
def png_data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:`` URI: the page shows an image that was never stored anywhere."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
