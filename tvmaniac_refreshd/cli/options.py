"""The options every verb shares, and how a verb's typed options are read from argparse.

Each verb's own options are a small frozen dataclass in its module (cli/verbs/), whose field
names are the argparse ``dest`` they are read from: adding an option is one ``add_argument`` and
one field, side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import TypeVar

Options = TypeVar("Options")


def from_namespace(kind: type[Options], namespace: argparse.Namespace) -> Options:
    """Return ``kind`` filled from the namespace attributes of the same names."""
    fields = dataclasses.fields(kind)  # type: ignore[arg-type]  # every kind is a dataclass
    return kind(**{field.name: getattr(namespace, field.name) for field in fields})


@dataclass(frozen=True)
class Common:
    """The options before the verb, which every verb shares."""

    config: str | None = None
    account: str | None = None
    verbose: int = 0


@dataclass(frozen=True)
class NoOptions:
    """For a verb that has none of its own."""
