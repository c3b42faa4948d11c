"""The command line as a user meets it: version, help with defaults, usage errors, the banner of ``smoke up``."""

from __future__ import annotations

import re
import shlex

import pytest

from smoke import stack
from smoke.cli import main
from smoke.settings import Settings

COMMANDS = ("up", "demo", "check", "serve", "worker", "simulate-cloud", "agent", "migrate")
OPTIONAL_WITHOUT_DEFAULT = ("--base-url", "--junit-xml", "--action-seconds", "--boot-seconds", "--config")
"""Options that take a value and have no default: required, or optional and off unless given."""


def help_of(command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "250")  # one line per option
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_version_names_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])

    assert re.fullmatch(r"smoke \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_with_a_value_shows_its_default_in_the_help(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = help_of(command, capsys, monkeypatch)

    options = re.findall(r"^  (--[a-z-]+) [A-Z_{][^ ]*\s+(.*)$", text, flags=re.MULTILINE)
    assert options or command == "migrate"  # migrate has flags only
    without_default = [name for name, help_text in options if "default" not in help_text]
    assert without_default == [name for name in OPTIONAL_WITHOUT_DEFAULT if name in dict(options)]


def test_the_worker_metrics_port_is_9100_unless_told(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "0 serves neither (default: 9100)" in help_of("worker", capsys, monkeypatch)


def test_a_junit_path_in_a_missing_directory_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check", "--base-url", "http://x", "--junit-xml", "/nowhere/smoke.xml"])

    assert exited.value.code == 2
    assert "argument --junit-xml: the directory /nowhere does not exist" in capsys.readouterr().err


def test_the_banners_curl_reads_the_token_from_the_environment_and_a_new_key_each_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(ops_bearer_token="generated-token")

    stack._print_banner(settings, "http://127.0.0.1:8000", generated_token=True)
    stack._print_banner(settings, "http://127.0.0.1:8000", generated_token=True)

    lines = capsys.readouterr().out.splitlines()
    assert "smoke: generated a token for this run: export OPS_BEARER_TOKEN=generated-token" in lines
    curls = [shlex.split(line) for line in lines if line.lstrip().startswith("curl ")]
    assert curls[0][curls[0].index("-H") + 1] == "Authorization: Bearer $OPS_BEARER_TOKEN"  # double quotes: expanded
    keys = [re.search(r'"idempotency_key": "([^"]+)"', " ".join(curl)) for curl in curls]
    assert keys[0] is not None
    assert keys[1] is not None
    assert keys[0].group(1) != keys[1].group(1)


def test_a_token_from_the_environment_is_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    stack._print_banner(Settings(ops_bearer_token="from-the-environment"), "http://h:1", generated_token=False)

    assert "from-the-environment" not in capsys.readouterr().out
