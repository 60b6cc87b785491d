"""Template context shared by every page."""

from classifier.services import DISCLAIMER


def site(request):
    return {"disclaimer": DISCLAIMER}
