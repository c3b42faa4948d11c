"""The dashboard's Jinja2 environment: autoescaped, strict about undefined names, with the few formats it shows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template import TemplateConfig

__all__ = ("STATIC", "template_config")

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(clock=_clock, stamp=_stamp, day=_day, seconds=_seconds, since=_since)
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


def _clock(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M:%S")


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _day(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%d %b")


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"


def _since(at: datetime, start: datetime) -> str:
    """How long after ``start`` ``at`` came: the timeline's steps, counted from the request."""
    return "+" + _seconds((at - start).total_seconds())
