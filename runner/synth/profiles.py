"""Org profiles (fixtures/profiles.yaml) as typed objects."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from runner.errors import DataError
from runner.resources import data_dir


@dataclass(frozen=True)
class Size:
    name: str
    posting_rules: int
    fiscal_periods: int
    transactions: int
    customers: int
    products: int


@dataclass(frozen=True)
class TxnCode:
    code: str
    type: str
    weight: int
    layout: str


@dataclass(frozen=True)
class Account:
    code: str
    name: str
    role: str
    type: str


@dataclass(frozen=True)
class Profiles:
    sizes: dict[str, Size]
    reversed: float
    voided: float
    closed_period: float
    statuses: dict[str, float]
    transaction_codes: tuple[TxnCode, ...]
    gl_line_code: str
    gl_accounts: tuple[Account, ...]
    currencies: tuple[str, ...]

    def size(self, name: str) -> Size:
        try:
            return self.sizes[name]
        except KeyError:
            raise DataError(f"unknown fixture size {name!r}; choose one of {', '.join(self.sizes)}") from None


@cache
def load_profiles() -> Profiles:
    path = data_dir("fixtures") / "profiles.yaml"
    try:
        raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        states = raw["states"]
        return Profiles(
            sizes={name: Size(name=name, **vals) for name, vals in raw["sizes"].items()},
            reversed=float(states["reversed"]),
            voided=float(states["voided"]),
            closed_period=float(states["closed_period"]),
            statuses={k: float(v) for k, v in states["statuses"].items()},
            transaction_codes=tuple(TxnCode(**c) for c in raw["transaction_codes"]),
            gl_line_code=str(raw["gl_line_code"]),
            gl_accounts=tuple(Account(**a) for a in raw["gl_accounts"]),
            currencies=tuple(raw["currencies"]),
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: invalid org profiles: {exc}") from exc
