"""Template filters of the view layer."""

import base64

from django import template

from classifier.models import safe_link

register = template.Library()
register.filter("safe_link", safe_link)  # {{ url|safe_link }}: the URL if http(s), else ""


@register.filter
def png_data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:`` URI: the page shows an image that was never stored anywhere."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
