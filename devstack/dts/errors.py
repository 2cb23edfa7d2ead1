"""Canonical error statuses and the fault the stand-in answers with."""

from __future__ import annotations

# The HTTP code of each canonical status, as Google's REST APIs answer (google/rpc/code.proto).
HTTP_CODES = {
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}


def _status(name: str) -> str:
    """A canonical status name, checked: a typo in a test must not inject nothing."""
    if name not in HTTP_CODES:
        raise ValueError(f"{name!r} is not a canonical error status ({', '.join(HTTP_CODES)})")
    return name


class RpcFault(Exception):
    """An error status to answer with (what the real service would say)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = _status(code)  # canonical status name, e.g. "NOT_FOUND"
        self.message = message

    @property
    def http_code(self) -> int:
        return HTTP_CODES[self.code]


def _invalid(message: str) -> RpcFault:
    return RpcFault("INVALID_ARGUMENT", message)
