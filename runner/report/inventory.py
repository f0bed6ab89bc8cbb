"""Render the generated-data inventory (a pure render of fixtures.json) as one self-contained HTML page."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_env = Environment(loader=PackageLoader("runner.report", "templates"), undefined=StrictUndefined,
                   autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)


def render_inventory(inventory: dict[str, Any]) -> str:
    return _env.get_template("inventory.html.j2").render(inv=inventory)
