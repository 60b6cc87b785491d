"""Template context shared by every page."""

from classifier.errors import DISCLAIMER


def site(request):
    return {"disclaimer": DISCLAIMER}
