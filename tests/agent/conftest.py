"""Fixtures of the reference-agent suite: the agent as the user data ships it, and cloud-init's own schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.agent.cloud_init_schema import SchemaUnavailable, cached_schema
from tests.agent.support import shipped_agent


@pytest.fixture(scope="session")
def agent_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference agent decoded from a rendered cloud-config: what a server would run, byte for byte."""
    return shipped_agent(tmp_path_factory.mktemp("shipped"))


@pytest.fixture(scope="session")
def cloud_config_schema() -> Any:
    """A validator for cloud-init's cloud-config schema (see ``cloud_init_schema.py`` for where it comes from)."""
    try:
        path = cached_schema()
    except SchemaUnavailable as reason:
        pytest.skip(f"cloud-init's schema is not available here: {reason}")
    schema = json.loads(path.read_text())
    validator = jsonschema.validators.validator_for(schema)
    return validator(schema, format_checker=validator.FORMAT_CHECKER)
