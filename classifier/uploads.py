"""Uploads stay in memory: one upload handler with hard size caps, and a guard on the declared size."""

import io

from django.conf import settings
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler

MEGABYTE = 1024 * 1024
# Room for the multipart boundaries, part headers and the CSRF token around the file bytes.
MULTIPART_OVERHEAD = 64 * 1024


def max_file_bytes() -> int:
    return int(settings.DERMAI_MAX_UPLOAD_MB * MEGABYTE)


def max_request_bytes() -> int:
    return int(settings.DERMAI_MAX_REQUEST_MB * MEGABYTE)


def declared_too_large(request) -> bool:
    """Whether the request announces a body over the request cap (checked before any byte is read)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return length > max_request_bytes() + MULTIPART_OVERHEAD


def unmeasured_body(request) -> bool:
    """Whether the request sends a body of unannounced length (``Transfer-Encoding: chunked``)."""
    return "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower() and not request.META.get(
        "CONTENT_LENGTH"
    )


class MemoryOnlyUploadHandler(FileUploadHandler):
    """Collect uploaded files in RAM and never fall back to a temporary file on disk.

    A file over the per-image cap, or any bytes past the per-request cap, are counted but not
    kept: the file keeps its true ``size`` and the service refuses it as too large, so an
    oversized body costs no memory.
    """

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.request_bytes = 0

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.buffer = io.BytesIO()
        self.file_bytes = 0

    def receive_data_chunk(self, raw_data, start):
        self.file_bytes += len(raw_data)
        self.request_bytes += len(raw_data)
        if self.file_bytes <= max_file_bytes() and self.request_bytes <= max_request_bytes():
            self.buffer.write(raw_data)
        elif self.buffer.tell():
            self.buffer = io.BytesIO()
        return None

    def file_complete(self, file_size):
        self.buffer.seek(0)
        return InMemoryUploadedFile(
            file=self.buffer,
            field_name=self.field_name,
            name=self.file_name,
            content_type=self.content_type,
            size=file_size if self.request_bytes <= max_request_bytes() else max(file_size, max_file_bytes() + 1),
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )
