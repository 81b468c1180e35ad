"""What every token store offers (the OS keyring, or a private file per account), and the choice
between them from the config. Callers hold the per-account lock around a read-modify-write."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from typing import Protocol

from tvmaniac_refreshd.core.tokens import TokenDocument


class TokenStore(Protocol):
    """One item per account (its token document), plus an optional client secret per account.

    Raises, from every method: ``StoreUnavailable`` when the store cannot be used (exit 69),
    ``StoreCorrupt`` when an item is not a document of ours.
    """

    kind: str  # "keyring" or "file": the config's [store] backend

    def backend_name(self) -> str:
        """Return what `config check` and `status` show as the backend."""
        ...

    def where(self, account: str) -> str:
        """Return where the item of ``account`` lives, for messages ("the keyring", a path)."""
        ...

    def protection(self) -> str:
        """Return one plain sentence on what protects the stored items."""
        ...

    def load(self, account: str) -> TokenDocument | None: ...

    def read_ahead(self, accounts: Collection[str]) -> AbstractContextManager[None]:
        """Within the block, this thread's first load of each of ``accounts`` may come from one
        bulk read made at its start (the daemon's plan); elsewhere a no-op."""
        ...

    def save(self, document: TokenDocument) -> None:
        """Replace the account's item, then read it back; the old item stays on failure."""
        ...

    def rewrite(self, document: TokenDocument) -> None:
        """Write the account's item again as it is: the refresher's proof that the store takes
        a write now, before a refresh token is spent. No read-back: the unchanged text reads
        back the same whether or not the write landed, so a read-back would prove nothing."""
        ...

    def delete(self, account: str) -> bool: ...

    def load_client_secret(self, account: str) -> str | None: ...

    def save_client_secret(self, account: str, secret: str) -> None: ...

    def delete_client_secret(self, account: str) -> bool: ...
