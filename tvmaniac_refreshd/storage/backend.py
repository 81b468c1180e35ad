"""The part of a ``keyring`` backend the stores use, so that both the direct Secret Service
client and keyring's own backends fit it."""

from __future__ import annotations

from typing import Protocol


class SecretBackend(Protocol):
    """The part of a ``keyring`` backend we use."""

    def get_password(self, service: str, username: str) -> str | None: ...

    def set_password(self, service: str, username: str, password: str) -> None: ...

    def delete_password(self, service: str, username: str) -> None: ...
