"""Refuse a request body over the upload cap before anything reads it."""

from http import HTTPStatus

from django.http import JsonResponse

from classifier.services import DISCLAIMER
from classifier.uploads import declared_too_large, too_large_message
from classifier.views import render_too_large


def upload_size_limit(get_response):
    def middleware(request):
        if not declared_too_large(request):
            return get_response(request)
        if request.path.startswith("/api/"):
            body = {"error": {"code": "too_large", "message": too_large_message()}, "disclaimer": str(DISCLAIMER)}
            return JsonResponse(body, status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        return render_too_large(request)

    return middleware
