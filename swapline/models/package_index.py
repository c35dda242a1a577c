"""Where a source archive lies on the package index: the simple API (PEP 691 JSON or PEP 503
HTML) of the index pip is set up for, searched for the archive's SHA-256. Nothing is built or run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from http.client import HTTPException

from .catalog import ArchiveSource
from .fetch import SourceFailed
from .hashing import short

PYPI_SIMPLE = "https://pypi.org/simple"


def index_url() -> str:
    """The simple API of the index pip is set up for: ``$PIP_INDEX_URL``, else pip's configured
    ``index-url`` (where pip is installed), else PyPI's."""
    env = os.environ.get("PIP_INDEX_URL", "").strip()
    if env:
        return env.rstrip("/")
    if importlib.util.find_spec("pip") is not None:
        for key in ("global.index-url", "install.index-url", "download.index-url"):
            try:
                done = subprocess.run([sys.executable, "-m", "pip", "config", "get", key], capture_output=True,
                                      text=True, timeout=30, check=False)
            except (OSError, subprocess.TimeoutExpired):
                break
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip().split()[0].rstrip("/")
    return PYPI_SIMPLE


class _Links(HTMLParser):
    """The ``href`` of every anchor of a simple-API HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def archive_url(source: ArchiveSource, index: str, *, timeout_s: float) -> str:
    """The address of ``source``'s archive, found by its sha256 on ``index``'s page for the
    project (PEP 691 JSON or PEP 503 HTML). Raises :class:`SourceFailed` when the index cannot
    be read or lists no file with that hash."""
    project = re.sub(r"[-_.]+", "-", source.project).lower()
    page = f"{index.rstrip('/')}/{project}/"
    if page.startswith("file:"):
        page += "index.html"  # an index on disk, as pip reads one
    request = urllib.request.Request(page, headers={
        "User-Agent": "swapline", "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            kind = response.headers.get("Content-Type", "") or ""
            body = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, HTTPException, ValueError) as exc:
        raise SourceFailed(f"cannot read the package index {page}: {getattr(exc, 'reason', exc)}",
                           network=True) from exc
    if "json" in kind:
        try:
            files = json.loads(body).get("files", [])
            links = [(str(f.get("url", "")), str((f.get("hashes") or {}).get("sha256", ""))) for f in files]
        except (ValueError, AttributeError, TypeError) as exc:
            raise SourceFailed(f"the package index {page} gave a page swapline cannot read: {exc}") from exc
    else:
        parser = _Links()
        parser.feed(body)
        links = [(h, urllib.parse.urldefrag(h)[1].partition("sha256=")[2]) for h in parser.hrefs]
    for url, sha in links:
        if sha.lower() == source.sha256:
            return urllib.parse.urljoin(page, urllib.parse.urldefrag(url)[0])
    raise SourceFailed(f"the package index {index} lists no archive of {source.requirement} "
                       f"with sha256 {short(source.sha256)}", network=True)
