from __future__ import annotations

from pathlib import Path

import pytest

from smoke.settings import Settings, SettingsError


def test_nothing_set_gives_the_defaults_smoke_up_runs_on() -> None:
    settings = Settings.from_env({}, dotenv=None)

    assert settings.database_url is None
    assert settings.hetzner_api_url == "https://api.hetzner.cloud/v1"
    assert settings.max_live_instances == 10
    assert settings.instance_ttl_seconds == 3600
    assert settings.agent_url_template == "http://{ipv4}:8080"


def test_values_are_parsed_and_normalised() -> None:
    settings = Settings.from_env(
        {"DATABASE_URL": "postgres://u@h/db", "SMOKE_MAX_LIVE_INSTANCES": "3", "LOG_LEVEL": "debug"}, dotenv=None
    )

    assert (settings.database_url, settings.max_live_instances, settings.log_level) == (
        "postgresql://u@h/db",
        3,
        "DEBUG",
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://x"),
        ("QUEUE_URL", "amqp://x"),
        ("SMOKE_MAX_LIVE_INSTANCES", "ten"),
        ("SMOKE_INSTANCE_TTL_SECONDS", "0"),
        ("PROVISION_TIMEOUT_SECONDS", "-1"),
        ("SMOKE_CUSTOMER_ID", "not-a-uuid"),
        ("AGENT_URL_TEMPLATE", "http://{ip}:8080"),
        ("PUBLIC_URL", "localhost:8000"),
        ("LOG_FORMAT", "xml"),
        ("OPS_BEARER_TOKEN", "two words"),
        ("HEADER_TIMEOUT_SECONDS", "0"),
    ],
)
def test_a_malformed_variable_is_named_in_the_error(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value}, dotenv=None)

    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")


def test_require_names_the_missing_variable() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://h/db"}, dotenv=None)

    with pytest.raises(SettingsError, match=r"^HETZNER_API_TOKEN: required by this command but not set$"):
        settings.require("DATABASE_URL", "HETZNER_API_TOKEN")


def test_require_names_every_missing_variable_at_once_and_how_to_make_a_secret() -> None:
    settings = Settings.from_env({}, dotenv=None)

    with pytest.raises(SettingsError) as raised:
        settings.require("DATABASE_URL", "OPS_BEARER_TOKEN", "AGENT_TOKEN_SECRET")

    assert str(raised.value) == (
        "DATABASE_URL, OPS_BEARER_TOKEN, AGENT_TOKEN_SECRET: required by this command but not set "
        "(make a secret with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    )


def test_the_environment_wins_over_the_dotenv_file(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("SMOKE_MAX_LIVE_INSTANCES=4\nPROVISION_TIMEOUT_SECONDS=30\n")

    settings = Settings.from_env({"SMOKE_MAX_LIVE_INSTANCES": "5"}, dotenv=dotenv)

    assert (settings.max_live_instances, settings.provision_timeout_seconds) == (5, 30)
