"""Reports rendered from data files: the synthetic-data inventory (fixtures.json) and the validation report
(results.json -> index.html + junit.xml). Every page is a pure render of its JSON: nothing is queried here."""

from __future__ import annotations

from runner.report.html import render_report, render_results_html
from runner.report.junit import junit_xml
from runner.report.results import (
                                   load_schema,
                                   previous_rollback,
                                   record_rollback,
                                   schema_errors,
                                   write_reports,
                                   write_results,
)

__all__ = ["junit_xml", "load_schema", "previous_rollback", "record_rollback", "render_report",
           "render_results_html", "schema_errors", "write_reports", "write_results"]
