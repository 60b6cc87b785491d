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


NBSP = "\u00a0"


@register.filter
def per_100(share: float | None) -> int | str:
    """A share in [0, 1] as a whole "N in 100": how the pages say measured rates to a lay reader.

    An unmeasured share (None) is a dash, never the word "None".
    """
    return "–" if share is None else round(100 * share)


@register.filter
def percent(probability: float) -> str:
    """A probability as a whole percent, a non-breaking space before "%" (in English and Spanish alike).

    Never "0 %" or "100 %" for what is neither: a model's probability is not a certainty.
    """
    value = round(100 * probability)
    if value == 0 and probability > 0:
        return f"<1{NBSP}%"
    if value == 100 and probability < 1:
        return f">99{NBSP}%"
    return f"{value}{NBSP}%"
