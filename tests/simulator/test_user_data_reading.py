"""How the process agents read user data (cloud-init's ``write_files`` and ``runcmd``) and systemd units."""

from __future__ import annotations

import base64
import gzip

import pytest

from smoke.simulators.agent.cloud_init import (
    CloudConfigError,
    SystemctlStart,
    WriteFile,
    parse_cloud_config,
    systemctl_starts,
)
from smoke.simulators.agent.systemd import ServiceUnit, UnitError, parse_service_unit

GZIPPED = base64.b64encode(gzip.compress(b"zipped\n")).decode()


def test_files_are_decoded_as_cloud_init_decodes_them() -> None:
    config = parse_cloud_config(
        "#cloud-config\n"
        "write_files:\n"
        "- {path: /a, content: plain}\n"
        f"- {{path: /b, encoding: b64, content: {base64.b64encode(b'based').decode()}}}\n"
        f"- {{path: /c, encoding: gz+b64, content: '{GZIPPED}'}}\n"
        f"- {{path: /d, encoding: gzip+base64, content: '{GZIPPED}', permissions: '0600'}}\n"
        "- {path: /e, content: !!binary aGk=, permissions: 0755}\n"
        "- {path: /f, encoding: text/plain}\n"
    )

    assert config is not None
    assert [(f.path, f.content, f.permissions) for f in config.write_files] == [
        ("/a", b"plain", 0o644),
        ("/b", b"based", 0o644),
        ("/c", b"zipped\n", 0o644),
        ("/d", b"zipped\n", 0o600),
        ("/e", b"hi", 0o755),
        ("/f", b"", 0o644),
    ]


def test_paths_cannot_leave_the_root_and_deferred_files_come_last() -> None:
    config = parse_cloud_config(
        "#cloud-config\nwrite_files:\n"
        "- {path: /late, defer: true}\n- {path: ../../etc/./x, append: true}\n- {path: /a/../b}\n"
    )

    assert config is not None
    assert config.files_in_order() == [
        WriteFile("/etc/x", b"", 0o644, append=True, defer=False),
        WriteFile("/b", b"", 0o644, append=False, defer=False),
        WriteFile("/late", b"", 0o644, append=False, defer=True),
    ]


@pytest.mark.parametrize(
    ("user_data", "problem"),
    [
        ("#cloud-config\n: [", "the user data is not valid YAML"),
        ("#cloud-config\n- a list\n", "the cloud-config is not a mapping"),
        ("#cloud-config\nwrite_files:\n- {content: x}\n", "write_files[0] has no path"),
        ("#cloud-config\nwrite_files:\n- {path: /x, source: {uri: 'http://x'}}\n", "write_files[0] (/x): a 'source'"),
        ("#cloud-config\nwrite_files:\n- {path: /x, encoding: gz, content: nope}\n", "write_files[0] (/x): cannot"),
        ("#cloud-config\nwrite_files:\n- {path: /x, permissions: rw}\n", "write_files[0] (/x): permissions 'rw'"),
        ("#cloud-config\nruncmd:\n- 'echo \"unclosed'\n", "runcmd[0] cannot be split into words"),
    ],
)
def test_what_cloud_init_could_not_carry_out_is_refused_in_one_line(user_data: str, problem: str) -> None:
    with pytest.raises(CloudConfigError) as refused:
        parse_cloud_config(user_data)

    assert str(refused.value).startswith(problem)
    assert "\n" not in str(refused.value)


def test_no_cloud_config_is_none() -> None:
    assert parse_cloud_config(None) is None
    assert parse_cloud_config("#!/bin/sh\necho hi\n") is None
    assert parse_cloud_config("#cloud-config\n") is not None


def test_runcmd_strings_are_split_into_words_and_systemctl_is_understood() -> None:
    config = parse_cloud_config("#cloud-config\nruncmd:\n- [systemctl, daemon-reload]\n- systemctl enable --now a b\n")

    assert config is not None
    assert config.runcmd == (("systemctl", "daemon-reload"), ("systemctl", "enable", "--now", "a", "b"))
    assert [systemctl_starts(command) for command in config.runcmd] == [
        None,
        SystemctlStart(("a.service", "b.service"), enable=True, now=True),
    ]
    assert systemctl_starts(["/bin/systemctl", "--no-block", "start", "x.service"]) == SystemctlStart(
        ("x.service",), enable=False, now=True
    )
    assert systemctl_starts(["systemctl", "enable", "x.timer"]) == SystemctlStart(("x.timer",), enable=True, now=False)
    assert systemctl_starts(["service", "x", "start"]) is None


def test_a_unit_gives_its_command_restart_policy_directory_and_environment() -> None:
    unit = parse_service_unit(
        "[Unit]\nExecStart=/not/this\n# a comment\n"
        "[Service]\nExecStart=/first\nExecStart=\nExecStart=-/usr/bin/python3 -I 'a b.py' \\\n  --port 8080\n"
        'Restart=on-failure\nRestartSec=500ms\nWorkingDirectory=-/srv\nEnvironment=A=1 "B=two words"\n'
        "ProtectSystem=strict\n"
    )

    assert unit == ServiceUnit(
        ("/usr/bin/python3", "-I", "a b.py", "--port", "8080"), "on-failure", 0.5, "/srv", {"A": "1", "B": "two words"}
    )
    assert [unit.restarts_after(code) for code in (0, 1, -9)] == [False, True, True]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[Service]\nType=simple\n", "the unit has no ExecStart"),
        ("[Service]\nExecStart=/x\nRestart=sometimes\n", "Restart=sometimes is not a restart policy"),
        ("[Service]\nExecStart=/x\nRestartSec=soon\n", "RestartSec=soon is not a duration this simulator reads"),
    ],
)
def test_a_unit_that_cannot_be_run_says_why(text: str, problem: str) -> None:
    with pytest.raises(UnitError, match=problem):
        parse_service_unit(text)
