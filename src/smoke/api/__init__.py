"""The HTTP driver: Litestar controllers that translate requests into service calls and errors into statuses."""

from smoke.api.app import create_app

__all__ = ("create_app",)
