"""Refuse, before anything reads it, a request body over the upload cap or without a declared length."""

from django.http import JsonResponse

from classifier.errors import PredictionError, error_body
from classifier.uploads import declared_too_large, too_large_message, unmeasured_body
from classifier.views import render_too_large


def upload_size_limit(get_response):
    def middleware(request):
        if unmeasured_body(request):
            # Without Content-Length the size cannot be checked before reading, and a WSGI server
            # may pass an empty body: refuse clearly instead of answering "no file".
            error = PredictionError("length_required")
            return JsonResponse(error_body(error.code, error.message), status=error.status)
        if not declared_too_large(request):
            return get_response(request)
        if request.path.startswith("/api/"):
            status = PredictionError("too_large").status
            return JsonResponse(error_body("too_large", too_large_message()), status=status)
        return render_too_large(request)

    return middleware
