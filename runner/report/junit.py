"""junit.xml from results.json: CI systems show every check as a test.

One testsuite per level. Record and aggregate checks give one testcase per check x organisation (name
`<check id> [<organisation code or id>]`), system checks one testcase each. A failed check is a <failure>, an
erroring check an <error>, a check in its warning band passes with a <system-out> note; the text lists the
samples (organisation, record id, message). Written with xml.etree, so every value is escaped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from runner.report.files import write_atomic

LEVELS = ("record", "aggregate", "system")


def _sample_text(samples: list[dict[str, Any]]) -> str:
    return "\n".join(f"{s['organization_id']} {s['record_id']}: {s['message']}" for s in samples)


def _case(suite: ET.Element, name: str, classname: str, status: str, failures: int, severity: str,
          samples: list[dict[str, Any]], error: str | None, seconds: float) -> tuple[int, int]:
    case = ET.SubElement(suite, "testcase", name=name, classname=classname, time=f"{seconds:.3f}")
    summary = f"{failures} offending row(s), severity {severity}"
    if status == "error":
        node = ET.SubElement(case, "error", message=error or "the check could not run", type=severity)
        node.text = error or ""
        return 0, 1
    if status == "failed":
        node = ET.SubElement(case, "failure", message=summary, type=severity)
        node.text = _sample_text(samples)
        return 1, 0
    if status == "warning":
        ET.SubElement(case, "system-out").text = f"warning: {summary}\n{_sample_text(samples)}"
    return 0, 0


# Verdicts that are not a pass even when no check failed: CI must not turn green over nothing or over a migration
# that was undone.
NOT_A_PASS = {"nothing_checked": "no level-1 record was checked: the checks ran over zero rows and prove nothing",
              "rolled_back": "the run was rolled back: the migration these checks describe no longer exists"}


def _verdict_suite(root: ET.Element, results: dict[str, Any]) -> tuple[int, int]:
    suite = ET.SubElement(root, "testsuite", name="verdict", tests="1")
    case = ET.SubElement(suite, "testcase", name="verdict", classname="hera_migrate.verdict", time="0.000")
    reason = NOT_A_PASS.get(str(results.get("status")))
    if reason is not None:
        ET.SubElement(case, "failure", message=f"{results['status']}: {reason}", type="verdict").text = reason
    suite.set("failures", "1" if reason else "0")
    suite.set("errors", "0")
    return 1, 1 if reason else 0


def junit_xml(results: dict[str, Any]) -> str:
    root = ET.Element("testsuites", name=f"hera-migrate validate {results['run_id']}")
    codes = {o["organization_id"]: o.get("organization_code") or o["organization_id"]
             for o in results["organizations"]}
    totals = [0, 0, 0]
    for level in LEVELS:
        suite = ET.SubElement(root, "testsuite", name=f"{level} checks")
        tests = failures = errors = 0
        for check in (c for c in results["checks"] if c["level"] == level):
            classname = f"hera_migrate.{level}.{check['id']}"
            per_org = check.get("organizations") or []
            if level != "system" and per_org:
                for org in per_org:
                    samples = [s for s in check["samples"] if s["organization_id"] == org["organization_id"]]
                    f, e = _case(suite, f"{check['id']} [{codes.get(org['organization_id'], org['organization_id'])}]",
                                 classname, org["status"], org["failures"], check["severity"], samples,
                                 org.get("error"), float(org.get("seconds") or 0.0))
                    tests, failures, errors = tests + 1, failures + f, errors + e
            else:
                f, e = _case(suite, check["id"], classname, check["status"], check["failures"], check["severity"],
                             check["samples"], check.get("error"), float(check.get("seconds") or 0.0))
                tests, failures, errors = tests + 1, failures + f, errors + e
        suite.set("tests", str(tests))
        suite.set("failures", str(failures))
        suite.set("errors", str(errors))
        totals = [totals[0] + tests, totals[1] + failures, totals[2] + errors]
    tests, failures = _verdict_suite(root, results)
    totals = [totals[0] + tests, totals[1] + failures, totals[2]]
    root.set("tests", str(totals[0]))
    root.set("failures", str(totals[1]))
    root.set("errors", str(totals[2]))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(results: dict[str, Any], path: Path) -> Path:
    write_atomic(path, junit_xml(results))
    return path
