"""Markdown documents of the repository (the model card, the experiments) rendered as pages of the site."""

import functools
import posixpath
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import markdown
from django.conf import settings
from django.templatetags.static import static
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

# Path from the repository root → the URL name of its page.
RENDERED_DOCUMENTS = {"ml/MODEL_CARD.md": "model-card", "docs/experiments.md": "experiments"}
FIGURES = "docs/"  # served as static files under model-card/ (settings.STATICFILES_DIRS)


class _SiteLinks(Treeprocessor):
    """Makes a document's relative links work on the site: figures in docs/ become static files,
    rendered documents their pages, and links to other files of the repository plain text."""

    def __init__(self, md: markdown.Markdown, folder: str) -> None:
        super().__init__(md)
        self.folder = folder

    def run(self, root: ET.Element) -> None:
        for element in root.iter():
            attribute = {"a": "href", "img": "src"}.get(element.tag)
            target = element.get(attribute) if attribute else None
            if target is None or urlsplit(target).scheme or target.startswith("#"):
                continue
            path, _, fragment = target.partition("#")
            path = posixpath.normpath(posixpath.join(self.folder, path))
            if element.tag == "img" and path.startswith(FIGURES):
                element.set("src", static("model-card/" + path.removeprefix(FIGURES)))
            elif element.tag == "a" and path in RENDERED_DOCUMENTS:
                element.set("href", reverse(RENDERED_DOCUMENTS[path]) + (f"#{fragment}" if fragment else ""))
            else:  # a file only the repository has: its name or caption as text
                element.text = element.text or element.get("alt")
                element.attrib.clear()
                element.tag = "span"


class _SiteLinksExtension(Extension):
    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (Markdown's name)
        md.treeprocessors.register(_SiteLinks(md, self.folder), "site_links", 1)  # after inline parsing (20)


@functools.cache
def document_html(path: str) -> SafeString:
    """One of ``RENDERED_DOCUMENTS`` (a file of the repository, not user input) as HTML."""
    if path not in RENDERED_DOCUMENTS:
        raise ValueError(f"{path!r} is not one of the rendered documents {list(RENDERED_DOCUMENTS)}")
    text = (settings.BASE_DIR / path).read_text(encoding="utf-8")
    extensions = ["tables", "fenced_code", "toc", _SiteLinksExtension(posixpath.dirname(path))]
    html = markdown.markdown(text, extensions=extensions)
    # Wide tables and code scroll on a phone; a scrollable region must take the keyboard focus.
    html = html.replace("<table>", '<table tabindex="0">').replace("<pre>", '<pre tabindex="0">')
    return mark_safe(html)  # noqa: S308
