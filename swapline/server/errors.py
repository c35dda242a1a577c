"""swapline's typed errors as HTTP answers: one line in ``{"detail": ...}``, never a traceback.

======================  ======
InputError              400 (415 for content the route does not take)
ConfigError             422 (and a request of the wrong shape)
NoFaceError             422
OutputError             500
ModelError              503
JobCancelled            409
any other exception     500 ("internal error: <type>")
======================  ======
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..errors import ConfigError, InputError, JobCancelled, ModelError, NoFaceError, OutputError, SwaplineError

log = logging.getLogger("swapline.server")


class UnsupportedMediaError(InputError):
    """The upload is not an image or a video swapline reads (HTTP 415)."""


class TooLargeError(InputError):
    """The request carries more bytes than the server takes (HTTP 413)."""


class NotFoundError(SwaplineError):
    """No such upload or job (HTTP 404)."""


class InvalidRequestError(SwaplineError):
    """A request of the wrong shape: a missing field, an unknown upload id (HTTP 422)."""

    exit_code = 2


class ConflictError(SwaplineError):
    """The resource is not in a state that allows this (HTTP 409)."""


class UnauthorizedError(SwaplineError):
    """No or a wrong bearer token (HTTP 401)."""


_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (UnsupportedMediaError, 415),
    (TooLargeError, 413),
    (NotFoundError, 404),
    (ConflictError, 409),
    (UnauthorizedError, 401),
    (InvalidRequestError, 422),
    (ConfigError, 422),
    (NoFaceError, 422),
    (InputError, 400),
    (OutputError, 500),
    (ModelError, 503),
    (JobCancelled, 409),
)


def status_of(exc: BaseException) -> int:
    """The HTTP status for a swapline error (400 for kinds not listed)."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": one_line(message)}, status_code=status, headers=headers)


async def _swapline_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status >= 500:
        log.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, one_line(exc))
    return error_response(status, str(exc) or type(exc).__name__, headers)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, f"internal error: {type(exc).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    """Map :class:`SwaplineError` kinds to their status and anything else to a plain 500."""
    app.add_exception_handler(SwaplineError, _swapline_error)
    app.add_exception_handler(Exception, _internal_error)
