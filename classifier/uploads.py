"""Uploads stay in memory: one upload handler with a hard size cap, and a guard on the declared size."""

import io

from django.conf import settings
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler

# Room for the multipart boundaries, part headers and the CSRF token around the file bytes.
MULTIPART_OVERHEAD = 64 * 1024


def max_upload_bytes() -> int:
    return int(settings.DERMAI_MAX_UPLOAD_MB * 1024 * 1024)


def too_large_message() -> str:
    return f"the upload is larger than the {settings.DERMAI_MAX_UPLOAD_MB:g} MB limit"


def declared_too_large(request) -> bool:
    """Whether the request announces a body over the cap (checked before any byte is read)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return length > max_upload_bytes() + MULTIPART_OVERHEAD


class MemoryOnlyUploadHandler(FileUploadHandler):
    """Collect uploaded files in RAM and never fall back to a temporary file on disk.

    Past the cap (counted over all files of the request) the bytes are counted but not kept, so a
    body that grows beyond its announced size costs no memory; the file keeps its true ``size``
    and the view refuses it as too large.
    """

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.total = 0

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.buffer = io.BytesIO()

    def receive_data_chunk(self, raw_data, start):
        self.total += len(raw_data)
        if self.total <= max_upload_bytes():
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
            size=file_size,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )
