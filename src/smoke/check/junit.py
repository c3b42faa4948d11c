"""The report as JUnit XML, the format GitHub's and GitLab's test views read: one test case per step."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Final

from smoke.check.report import CheckReport

__all__ = ("junit_xml",)

_XML_INVALID: Final = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def junit_xml(report: CheckReport) -> str:
    """One ``testsuite`` "smoke check", one ``testcase`` per step; a failed step's one-line message is its failure."""
    counts = {
        "tests": str(len(report.steps)),
        "failures": str(len(report.failed)),
        "errors": "0",
        "skipped": str(sum(step.status == "skipped" for step in report.steps)),
        "time": f"{report.seconds:.3f}",
    }
    suites = ET.Element("testsuites", {"name": "smoke"} | counts)
    suite = ET.SubElement(
        suites,
        "testsuite",
        {"name": "smoke check"} | counts | {"timestamp": report.started_at.strftime("%Y-%m-%dT%H:%M:%S")},
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("base_url", report.base_url),
        ("idempotency_key", report.idempotency_key),
        ("instance_id", report.instance_id or ""),
    ):
        ET.SubElement(properties, "property", name=name, value=_xml_text(value))
    for step in report.steps:
        case = ET.SubElement(suite, "testcase", classname="smoke.check", name=step.name, time=f"{step.seconds:.3f}")
        message = _xml_text(step.message)
        if step.status == "failed":
            ET.SubElement(case, "failure", message=message, type="StepFailed").text = message
        elif step.status == "skipped":
            ET.SubElement(case, "skipped", message=message)
        if step.name == "chat" and report.reply:
            ET.SubElement(case, "system-out").text = _xml_text(report.reply)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _xml_text(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot hold (control characters, lone surrogates) replaced."""
    return _XML_INVALID.sub("\ufffd", text)
