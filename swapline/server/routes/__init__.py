"""The API's routes, one module per resource; :data:`routers` in the order they are mounted."""

from __future__ import annotations

from . import jobs, preview, system, uploads

routers = (system.router, uploads.router, jobs.router, preview.router)

__all__ = ["routers"]
