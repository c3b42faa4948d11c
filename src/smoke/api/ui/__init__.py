"""The ``/ui`` dashboard: a driver of the API app, reading through the domain's ``Dashboard`` service only."""

from smoke.api.ui.controller import dashboard_routes
from smoke.api.ui.rendering import template_config

__all__ = ("dashboard_routes", "template_config")
