"""Token documents and client secrets in private files, one per account: the explicit choice
(``[store] backend = "file"``) for machines without a keyring, such as servers and containers.

The files are protected by their permissions (0600 in a 0700 directory of this user), not by
encryption: anyone who can act as this user, or as root, can read them, as with gh, rclone or
the cloud CLIs on a server. Every write is atomic and durable and is read back, like the
keyring's. Every ``OSError``, and a directory or file that is not safely ours
(``UnsafeLocation``, safe_files.py's one policy), is translated here into ``StoreUnavailable``,
naming the directory: the store cannot be used.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tvmaniac_refreshd.core.errors import StoreCorrupt, StoreUnavailable, UnsafeLocation
from tvmaniac_refreshd.core.tokens import TokenDocument, decode_document, encode_document
from tvmaniac_refreshd.storage.layout import DOCUMENT_SUFFIX, ENCRYPTED_SUFFIX, SECRET_SUFFIX
from tvmaniac_refreshd.storage.safe_files import (
    delete_private_file,
    open_private_dir,
    read_private_file,
    write_private_file,
)

if TYPE_CHECKING:
    from tvmaniac_refreshd.storage.systemd_creds import SystemdCreds

T = TypeVar("T")
PROTECTION = (
    "a file readable only by this user (mode 0600 in a 0700 directory): protected by "
    "permissions, not by encryption; root and anything running as this user can read it"
)
ENCRYPTED_PROTECTION = (
    "a file readable only by this user, encrypted with systemd-creds for this user with the "
    "host key (and the TPM2 if there is one): a copy of the file or of the home directory is "
    "useless elsewhere; root on this machine, and anything running as this user, can decrypt it"
)


def _reason(exc: OSError | UnsafeLocation, directory: Path) -> str:
    if isinstance(exc, UnsafeLocation):
        return str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the file system holding {directory} is full; free some space and try again"
    if exc.errno == errno.EROFS:
        return f"{directory} is on a read-only file system; make it writable and try again"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{directory} is not writable by this user ({exc.strerror}); fix its owner or mode"
    return f"{exc.strerror or exc} in {directory}"


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def plaintext_leftovers(store: object, account: str) -> list[str]:
    """The plain files an encrypted file ``store`` still holds for ``account`` (see
    ``FileStore.plaintext_leftovers``); none for any other store."""
    return store.plaintext_leftovers(account) if isinstance(store, FileStore) else []


def leftover_advice(account: str, paths: list[str]) -> str:
    """What to say of plain-text files left behind when encryption was turned on."""
    return (
        f'unencrypted copies of {account!r} from before encrypt = "systemd-creds" are still '
        f"on disk and never read: {', '.join(paths)}. `tvmaniac-refreshd store migrate "
        "--encrypt` encrypts them in place; `logout` deletes them"
    )


class FileStore:
    """One private file per account under ``directory``."""

    kind = "file"

    def __init__(self, directory: Path, *, cipher: SystemdCreds | None = None) -> None:
        """``cipher``: encrypt every file with it (``[store] encrypt``), else plain JSON."""
        self.directory = directory
        self._cipher = cipher
        self.encrypted = cipher is not None
        self._suffix = ENCRYPTED_SUFFIX if self.encrypted else ""

    def backend_name(self) -> str:
        with self._dir("opening the token directory"):
            pass
        how = ", encrypted with systemd-creds" if self.encrypted else ""
        return f"file store in {self.directory}{how}"

    def where(self, account: str) -> str:
        return str(self.directory / self._name(account, DOCUMENT_SUFFIX))

    def protection(self) -> str:
        return ENCRYPTED_PROTECTION if self.encrypted else PROTECTION

    def _name(self, account: str, suffix: str) -> str:
        return f"{account}{suffix}{self._suffix}"

    def _seal(self, name: str, text: str) -> bytes:
        data = text.encode("utf-8")
        return data if self._cipher is None else self._cipher.encrypt(name, data)

    @contextlib.contextmanager
    def _dir(self, what: str) -> Iterator[int]:
        try:
            fd = open_private_dir(self.directory)
        except (OSError, UnsafeLocation) as exc:
            raise StoreUnavailable(
                f"the file store failed while {what}: {_reason(exc, self.directory)}"
            ) from None
        try:
            yield fd
        finally:
            os.close(fd)

    def _call(self, what: str, work: Callable[[int], T]) -> T:
        with self._dir(what) as fd:
            try:
                return work(fd)
            except (OSError, UnsafeLocation) as exc:
                raise StoreUnavailable(
                    f"the file store failed while {what}: {_reason(exc, self.directory)}"
                ) from None

    def _read(self, name: str, what: str) -> str | None:
        data = self._call(what, lambda fd: read_private_file(fd, name))
        if data is None:
            return None
        if self._cipher is not None:
            data = self._cipher.decrypt(name, data)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return "\ufffd"  # not ours: decode_document says so in its words

    def read_ahead(self, accounts: Collection[str]) -> contextlib.nullcontext[None]:
        """Nothing to gain: each file is one read anyway."""
        return contextlib.nullcontext()

    def load(self, account: str) -> TokenDocument | None:
        """Return the stored tokens of ``account``, or None if there are none."""
        text = self._read(
            self._name(account, DOCUMENT_SUFFIX), f"reading the tokens of {account!r}"
        )
        return None if text is None else decode_document(text, account)

    def save(self, document: TokenDocument) -> None:
        """Replace the account's file atomically and durably, then read it back."""
        account = document.account
        name = self._name(account, DOCUMENT_SUFFIX)
        data = self._seal(name, encode_document(document))

        def write_and_verify(fd: int) -> bool:
            write_private_file(fd, name, data)
            return read_private_file(fd, name) == data

        if not self._call(f"storing the tokens of {account!r}", write_and_verify):
            raise StoreCorrupt(
                f"{self.where(account)} held something else right after it was written; "
                "another program writes there. Stop it and run `tvmaniac-refreshd login`",
                account=account,
            )

    def rewrite(self, document: TokenDocument) -> None:
        """Write the account's file again with the bytes it holds (store.py says why): the
        same write as ``save``, without sealing again (a ``systemd-creds`` run) or reading
        back. Its content is not ``document``'s: the caller has just read it from this file."""
        name = self._name(document.account, DOCUMENT_SUFFIX)

        def write_again(fd: int) -> None:
            data = read_private_file(fd, name)
            if data is None:  # gone meanwhile: the caller's lock says it cannot be
                raise FileNotFoundError(name)
            write_private_file(fd, name, data)

        self._call(f"storing the tokens of {document.account!r}", write_again)

    def delete(self, account: str) -> bool:
        return self._call(
            f"deleting the tokens of {account!r}",
            lambda fd: delete_private_file(fd, self._name(account, DOCUMENT_SUFFIX)),
        )

    def unencrypted(self) -> FileStore:
        """The same directory read as a store without encryption: its plain-text files."""
        return FileStore(self.directory)

    def plaintext_leftovers(self, account: str) -> list[str]:
        """With encryption on, the paths of the plain files an unencrypted store left for
        ``account`` (its tokens, its client secret): never read again, but readable to anyone
        who can read this user's files, and their refresh token stays valid at the provider."""
        if not self.encrypted:
            return []
        names = [f"{account}{suffix}" for suffix in (DOCUMENT_SUFFIX, SECRET_SUFFIX)]
        found = self._call(
            "looking for plain-text files", lambda fd: [n for n in names if _exists(fd, n)]
        )
        return [str(self.directory / name) for name in found]

    def delete_plaintext_leftovers(self, account: str) -> list[str]:
        """Delete what ``plaintext_leftovers`` names; return the paths deleted."""
        found = self.plaintext_leftovers(account)
        plain = self.unencrypted()
        for path in found:
            if path.endswith(SECRET_SUFFIX):
                plain.delete_client_secret(account)
            else:
                plain.delete(account)
        return found

    def load_client_secret(self, account: str) -> str | None:
        text = self._read(
            self._name(account, SECRET_SUFFIX), f"reading the client secret of {account!r}"
        )
        return None if text is None else text.strip() or None

    def save_client_secret(self, account: str, secret: str) -> None:
        name = self._name(account, SECRET_SUFFIX)
        data = self._seal(name, secret)
        self._call(
            f"storing the client secret of {account!r}",
            lambda fd: write_private_file(fd, name, data),
        )

    def delete_client_secret(self, account: str) -> bool:
        return self._call(
            f"deleting the client secret of {account!r}",
            lambda fd: delete_private_file(fd, self._name(account, SECRET_SUFFIX)),
        )
