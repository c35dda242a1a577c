"""Where the server's web pages live (the main page, the live page and their scripts), shipped
inside the package as ``server/static``."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
