"""Errors a use case raises for the API to turn into a 4xx that names the field."""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400
    error_type = "invalid"

    def __init__(self, field: str | None, message: str, *, location: str = "body") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.location = location


class NotFound(ServiceError):
    status_code = 404
    error_type = "not_found"


class UnknownReference(ServiceError):
    """The request names another object that does not exist (e.g. an unknown customer_id)."""

    status_code = 422
    error_type = "unknown_reference"


class Conflict(ServiceError):
    status_code = 409
    error_type = "conflict"


class Forbidden(ServiceError):
    """The caller's token may not do this (its scope, or a field a customer may not change)."""

    status_code = 403
    error_type = "forbidden"
