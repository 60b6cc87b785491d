"""Top-level URLs: the classifier's pages and API, the admin, and the API schema and docs."""

from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

urlpatterns = [
    path("", include("classifier.urls")),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI sets inline styles as it renders: its page alone may (styles only, never scripts).
    path(
        "api/v1/docs/",
        csp_update({"style-src": ["'self'", "'unsafe-inline'"]})(
            SpectacularSwaggerSplitView.as_view(url_name="schema")
        ),
        name="api-docs",
    ),
]

# Under /api/ Django's own errors answer in the API's JSON envelope; elsewhere as pages.
handler400 = "classifier.views.bad_request"
handler404 = "classifier.views.not_found"
handler500 = "classifier.views.server_error"
# Not one of Django's: classifier.middleware answers a body declared over the upload cap with it.
handler413 = "classifier.views.too_large"
