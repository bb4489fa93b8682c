"""The one exception the sandbox raises for a client's mistake, rendered as Starweb's ErrorModel."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the shop refuses: carries the HTTP status and the ErrorModel fields Starweb sends."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, Any]:
        """The ErrorModel JSON: ``{"error": ..., "error_description": ...}``."""
        return {"error": self.error, "error_description": self.description}


def bad_request(description: str) -> ApiError:
    """400 with the generic code, for validation failures (the spec documents no per-field format)."""
    return ApiError(400, "bad_request", description)


def not_found(description: str) -> ApiError:
    """404 for an entity that does not exist (or no longer does)."""
    return ApiError(404, "not_found", description)


def forbidden(description: str) -> ApiError:
    """403 for writes the shop never allows, e.g. deleting the master pricelist."""
    return ApiError(403, "forbidden", description)
