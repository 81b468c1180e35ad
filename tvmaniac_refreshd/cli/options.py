"""Each verb's options as a small typed dataclass, built from argparse's namespace once.

A field's name is the argparse ``dest`` it is read from, so adding an option is one
``add_argument`` in parser.py and one field here.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Literal, TypeVar

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


@dataclass(frozen=True)
class LoginOptions:
    browser: bool = False
    port: int | None = None
    replace: bool = False


@dataclass(frozen=True)
class LogoutOptions:
    local: bool = False  # delete from the store without sending anything anywhere


@dataclass(frozen=True)
class StatusOptions:
    json: bool = False
    check: bool = False  # exit 77 if any account needs `login`


@dataclass(frozen=True)
class TokenOptions:
    min_valid: int | None = None
    json: bool = False


@dataclass(frozen=True)
class ExecOptions:
    min_valid: int | None = None
    env: str = "ACCESS_TOKEN"
    command: list[str] | None = None  # what followed `--`; None: there was no `--`


@dataclass(frozen=True)
class GitCredentialOptions:
    action: Literal["get", "store", "erase"] = "get"


@dataclass(frozen=True)
class CompletionOptions:
    shell: Literal["bash", "zsh", "fish"] = "bash"


@dataclass(frozen=True)
class RefreshOptions:
    force: bool = False
    all: bool = False


@dataclass(frozen=True)
class ServiceInstallOptions:
    mode: Literal["daemon", "timer"] = "daemon"
    dry_run: bool = False


@dataclass(frozen=True)
class ServiceUninstallOptions:
    dry_run: bool = False


@dataclass(frozen=True)
class ServiceStatusOptions:
    json: bool = False


@dataclass(frozen=True)
class ConfigCheckOptions:
    only_config: bool = False  # the config file alone: what a service reload runs first


@dataclass(frozen=True)
class ConfigInitOptions:
    client_id: str | None = None
    preset: str | None = None  # config/presets.py: "google" or "microsoft"
    tenant: str = "common"  # with preset "microsoft"


@dataclass(frozen=True)
class StoreMigrateOptions:
    to: Literal["file", "keyring"] = "keyring"  # required on the command line
