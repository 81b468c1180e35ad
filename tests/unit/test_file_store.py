"""The file store: private files written atomically and durably, unsafe places refused, every
OSError told with the directory; and `store migrate`, which never loses the source item."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import pytest

from tests.fakes import MemoryBackend
from tvmaniac_refreshd.cli.verbs.store_migrate import move_account
from tvmaniac_refreshd.config.settings import StoreSettings, parse_config
from tvmaniac_refreshd.core.errors import (
    ConfigError,
    StoreConflict,
    StoreCorrupt,
    StoreMisconfigured,
    StoreUnavailable,
)
from tvmaniac_refreshd.core.tokens import TokenDocument, TokenSet, encode_document
from tvmaniac_refreshd.storage.file_store import FileStore
from tvmaniac_refreshd.storage.keyring_store import KeyringStore
from tvmaniac_refreshd.storage.safe_files import STALE_TEMP_SECONDS
from tvmaniac_refreshd.storage.store import TokenStore
from tvmaniac_refreshd.storage.systemd_creds import SystemdCreds


def document(access: str = "a" * 64, account: str = "default") -> TokenDocument:
    return TokenDocument(
        account=account,
        provider="trakt",
        tokens=TokenSet(access, "r" * 64, 1, 604800, 604801),
        fingerprint="sha256:x",
        obtained_at=1,
    )


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "state" / "tokens"


class TestFileStore:
    def test_round_trip_with_private_modes(self, directory: Path) -> None:
        """The document is the same versioned text as in the keyring, 0600 in a 0700 dir."""
        store = FileStore(directory)
        store.save(document())

        path = directory / "default.json"
        assert path.read_text() == encode_document(document())
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert store.load("default") == document()
        assert store.delete("default") is True
        assert store.load("default") is None
        assert store.delete("default") is False

    def test_client_secret_is_its_own_file(self, directory: Path) -> None:
        store = FileStore(directory)
        store.save(document())
        store.save_client_secret("default", "s3cret-client")

        assert store.load_client_secret("default") == "s3cret-client"
        assert store.load("default") == document()
        assert stat.S_IMODE((directory / "default.client_secret").stat().st_mode) == 0o600
        assert store.delete_client_secret("default") is True
        assert store.load_client_secret("default") is None

    def test_replacing_leaves_no_temporary_file(self, directory: Path) -> None:
        store = FileStore(directory)
        store.save(document("a" * 64))
        store.save(document("b" * 64))

        assert sorted(p.name for p in directory.iterdir()) == ["default.json"]
        loaded = store.load("default")
        assert loaded is not None
        assert loaded.tokens.access_token == "b" * 64

    def test_a_symlinked_directory_is_refused(self, tmp_path: Path) -> None:
        """Someone who can plant a symlink must not redirect the tokens elsewhere."""
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        link = tmp_path / "tokens"
        link.symlink_to(elsewhere)

        with pytest.raises(StoreUnavailable, match="symbolic link"):
            FileStore(link).save(document())
        assert list(elsewhere.iterdir()) == []

    def test_a_symlinked_file_is_refused(self, directory: Path, tmp_path: Path) -> None:
        store = FileStore(directory)
        store.save(document())
        target = tmp_path / "planted.json"
        target.write_text(encode_document(document("p" * 64)))
        target.chmod(0o600)
        (directory / "default.json").unlink()
        (directory / "default.json").symlink_to(target)

        with pytest.raises(StoreUnavailable, match="symbolic link"):
            store.load("default")

    def test_a_group_writable_directory_is_refused(self, directory: Path) -> None:
        directory.mkdir(parents=True, mode=0o700)
        directory.chmod(0o770)

        with pytest.raises(StoreUnavailable, match=r"writable by other users.*chmod 700"):
            FileStore(directory).save(document())

    def test_a_readable_directory_of_ours_is_tightened(self, directory: Path) -> None:
        directory.mkdir(parents=True, mode=0o700)
        directory.chmod(0o755)
        FileStore(directory).save(document())

        assert stat.S_IMODE(directory.stat().st_mode) == 0o700

    def test_a_foreign_directory_is_refused(self, directory: Path) -> None:
        """A directory owned by another user (here: nobody) is not ours to keep secrets in."""
        directory.mkdir(parents=True, mode=0o700)
        os.chown(directory, 65534, 65534)  # the suite runs as root, as CI does

        with pytest.raises(StoreUnavailable, match="belongs to uid 65534"):
            FileStore(directory).load("default")

    def test_a_file_readable_by_others_is_refused(self, directory: Path) -> None:
        store = FileStore(directory)
        store.save(document())
        (directory / "default.json").chmod(0o644)

        with pytest.raises(StoreUnavailable, match=r"accessible to other users.*chmod 600"):
            store.load("default")

    def test_a_foreign_file_is_reported_as_corrupt_and_kept(self, directory: Path) -> None:
        store = FileStore(directory)
        store.save(document())
        (directory / "default.json").write_text("hello")

        with pytest.raises(StoreCorrupt):
            store.load("default")
        assert (directory / "default.json").read_text() == "hello"

    @pytest.mark.parametrize(
        ("code", "words"),
        [(errno.ENOSPC, "is full"), (errno.EROFS, "read-only file system")],
    )
    def test_a_failed_write_names_the_directory_and_keeps_the_old_file(
        self, directory: Path, monkeypatch: pytest.MonkeyPatch, code: int, words: str
    ) -> None:
        """A full disk or read-only file system, as the kernel reports it at fsync."""
        store = FileStore(directory)
        store.save(document("a" * 64))
        before = (directory / "default.json").read_bytes()
        real_fsync = os.fsync

        def failing_fsync(fd: int) -> None:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(code, os.strerror(code))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(StoreUnavailable, match=words) as caught:
            store.save(document("b" * 64))

        assert str(directory) in str(caught.value)
        assert (directory / "default.json").read_bytes() == before
        assert sorted(p.name for p in directory.iterdir()) == ["default.json"]

    def test_a_killed_writer_leftover_is_swept(
        self, directory: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """At a process's first write in the directory, then once a minute at most: listing
        the directory before every write made a thousand accounts' first plan quadratic."""
        store = FileStore(directory)
        directory.mkdir(mode=0o700, parents=True)
        leftover = directory / ".default.json.0123456789ab.tmp"
        leftover.write_text('{"half')
        os.utime(leftover, (1, 1))  # older than any write in progress
        other = directory / ".other.json.ba9876543210.tmp"
        other.write_text('{"half')
        os.utime(other, (1, 1))
        store.save(document())

        assert sorted(p.name for p in directory.iterdir()) == ["default.json"]
        leftover.write_text('{"half')
        os.utime(leftover, (1, 1))
        store.save(document("c" * 64))
        assert leftover.exists()  # not listed again so soon
        later = time.time() + STALE_TEMP_SECONDS
        monkeypatch.setattr(time, "time", lambda: later)
        store.save(document("d" * 64))
        assert sorted(p.name for p in directory.iterdir()) == ["default.json"]

    def test_the_backend_names_the_protection(self, directory: Path) -> None:
        store = FileStore(directory)

        assert str(directory) in store.backend_name()
        assert "not by encryption" in store.protection()


class TestConfig:
    BASE = '[accounts.default]\nprovider = "trakt"\nclient_id = "x"\n'

    def test_the_keyring_stays_the_default(self) -> None:
        assert parse_config(self.BASE).store.backend == "keyring"
        assert StoreSettings().backend == "keyring"

    def test_file_is_chosen_explicitly(self) -> None:
        config = parse_config(self.BASE + '[store]\nbackend = "file"\n')
        assert config.store.backend == "file"

    def test_an_unknown_backend_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match=r"store\.backend"):
            parse_config(self.BASE + '[store]\nbackend = "plaintext"\n')

    def test_encryption_is_for_the_file_store_only(self) -> None:
        with pytest.raises(ConfigError, match=r"store\.encrypt"):
            parse_config(self.BASE + '[store]\nencrypt = "systemd-creds"\n')
        config = parse_config(self.BASE + '[store]\nbackend = "file"\nencrypt = "systemd-creds"\n')
        assert config.store.encrypt == "systemd-creds"


class TestSystemdCredsRefusal:
    def test_no_systemd_creds_is_a_config_problem_not_plain_text(self, tmp_path: Path) -> None:
        with pytest.raises(StoreMisconfigured, match="not installed") as caught:
            SystemdCreds(tool=str(tmp_path / "systemd-creds"))
        assert caught.value.exit_code == 78

    def test_an_old_systemd_is_refused_with_its_version(self, tmp_path: Path) -> None:
        """A stand-in that answers --version as Debian 12's does (the real one is tested in
        the integration tests, on the host and in a Debian 13 container)."""
        tool = tmp_path / "systemd-creds"
        tool.write_text("#!/bin/sh\necho 'systemd 252 (252.39-1~deb12u2)'\n")
        tool.chmod(0o755)
        with pytest.raises(StoreMisconfigured, match="this system has systemd 252"):
            SystemdCreds(tool=str(tool))


class Interrupted(BaseException):
    """A kill at one step: nothing after it runs (BaseException, as SystemExit would be)."""


class Interrupting:
    """Wraps a real store and dies at its ``fail_at``-th call, as a killed process would."""

    def __init__(self, inner: TokenStore, counter: list[int], fail_at: int) -> None:
        self._inner = inner
        self._counter = counter
        self._fail_at = fail_at
        self.kind = inner.kind

    def __getattr__(self, name: str) -> object:
        method = getattr(self._inner, name)

        def call(*args: object) -> object:
            self._counter[0] += 1
            if self._counter[0] == self._fail_at:
                raise Interrupted
            return method(*args)

        return call


def keyring_store(backend: MemoryBackend) -> KeyringStore:
    return KeyringStore(StoreSettings(), lambda: backend)


class TestMigrate:
    @pytest.mark.parametrize("to", ["file", "keyring"])
    def test_moves_tokens_and_secret_both_ways(self, directory: Path, to: str) -> None:
        keyring, files = keyring_store(MemoryBackend()), FileStore(directory)
        source, target = (keyring, files) if to == "file" else (files, keyring)
        source.save(document())
        source.save_client_secret("default", "s3cret")

        assert move_account("default", source, target) == ["tokens", "client secret"]
        assert target.load("default") == document()
        assert target.load_client_secret("default") == "s3cret"
        assert source.load("default") is None
        assert source.load_client_secret("default") is None
        assert move_account("default", source, target) == []  # a second run finds nothing

    def test_interrupted_at_every_step_the_item_is_never_lost(self, directory: Path) -> None:
        """Kill the migration at each store call in turn: the source holds the item until the
        target holds a verified copy; a rerun then completes the move."""
        steps = 0
        while True:
            steps += 1
            backend = MemoryBackend()
            source = keyring_store(backend)
            target = FileStore(directory / str(steps))
            source.save(document())
            source.save_client_secret("default", "s3cret")
            counter = [0]
            try:
                move_account(
                    "default",
                    Interrupting(source, counter, steps),  # type: ignore[arg-type]
                    Interrupting(target, counter, steps),  # type: ignore[arg-type]
                )
            except Interrupted:
                pass
            else:
                break  # no call left to interrupt
            in_source, in_target = source.load("default"), target.load("default")
            assert in_source == document() or in_target == document(), steps
            secret_source = source.load_client_secret("default")
            secret_target = target.load_client_secret("default")
            assert "s3cret" in (secret_source, secret_target), steps
            move_account("default", source, target)
            assert target.load("default") == document()
            assert target.load_client_secret("default") == "s3cret"
        assert steps > 8  # every load, save, read-back and delete was a kill point

    def test_a_failing_target_keeps_the_source(self, directory: Path) -> None:
        """A target that cannot be written (a locked keyring here) leaves the file in place."""
        files = FileStore(directory)
        files.save(document())
        keyring = keyring_store(MemoryBackend(fail_with=OSError("bus gone")))

        with pytest.raises(StoreUnavailable):
            move_account("default", files, keyring)
        assert files.load("default") == document()

    def test_a_copy_that_reads_back_differently_keeps_the_source(self, directory: Path) -> None:
        files = FileStore(directory)
        files.save(document())

        class Shadowed(KeyringStore):
            """Empty until written; then another program's item stands in its place."""

            written = False

            def save(self, document: TokenDocument) -> None:
                self.written = True

            def load(self, account: str) -> TokenDocument | None:
                return document("z" * 64) if self.written else None

        with pytest.raises(StoreCorrupt, match="still in"):
            move_account("default", files, Shadowed(StoreSettings(), MemoryBackend))
        assert files.load("default") == document()


def issued(at: int, access: str) -> TokenDocument:
    """A token pair the provider issued at ``at``."""
    return TokenDocument(
        account="default",
        provider="trakt",
        tokens=TokenSet(access, access.replace("a", "r"), at, 604800, at + 604800),
        fingerprint="sha256:x",
        obtained_at=at,
    )


OLDER, NEWER = issued(1000, "a" * 60 + "old1"), issued(2000, "a" * 60 + "new2")


class TestMigrateOverAnotherPair:
    """Both stores hold the account (migrated before the config was switched, or back and
    forth): the spent pair must not replace the live one."""

    @pytest.mark.parametrize("newer_in", ["source", "target"])
    def test_without_force_nothing_moves(self, directory: Path, newer_in: str) -> None:
        source, target = keyring_store(MemoryBackend()), FileStore(directory)
        source.save(NEWER if newer_in == "source" else OLDER)
        target.save(OLDER if newer_in == "source" else NEWER)

        with pytest.raises(StoreConflict, match="--force") as caught:
            move_account("default", source, target)

        assert str(target.where("default") if newer_in == "target" else "keyring") in str(
            caught.value
        )
        assert source.load("default") == (NEWER if newer_in == "source" else OLDER)
        assert target.load("default") == (OLDER if newer_in == "source" else NEWER)

    def test_force_keeps_the_newer_pair_already_in_the_target(self, directory: Path) -> None:
        source, target = keyring_store(MemoryBackend()), FileStore(directory)
        source.save(OLDER)
        target.save(NEWER)

        done = move_account("default", source, target, force=True)

        assert target.load("default") == NEWER
        assert source.load("default") is None
        assert done == [
            f"kept the newer tokens in {target.where('default')} (issued 1970-01-01T00:33:20Z) "
            "and deleted the older ones from the keyring"
        ]

    def test_force_moves_a_newer_pair_over_an_older_one(self, directory: Path) -> None:
        source, target = keyring_store(MemoryBackend()), FileStore(directory)
        source.save(NEWER)
        target.save(OLDER)

        done = move_account("default", source, target, force=True)

        assert target.load("default") == NEWER
        assert source.load("default") is None
        assert "kept the newer tokens from the keyring" in done[0]

    def test_the_same_pair_in_both_is_no_conflict(self, directory: Path) -> None:
        """A migration killed between the verified copy and the deletion, run again."""
        source, target = keyring_store(MemoryBackend()), FileStore(directory)
        source.save(NEWER)
        target.save(NEWER)

        assert move_account("default", source, target) == ["tokens"]
        assert source.load("default") is None


class Showing:
    """Stands in for systemd-creds: an 'encryption' that tells which name it was made for."""

    def encrypt(self, name: str, data: bytes) -> bytes:
        return f"CRED[{name}]".encode() + bytes(reversed(data))

    def decrypt(self, name: str, data: bytes) -> bytes:
        prefix = f"CRED[{name}]".encode()
        assert data.startswith(prefix)
        return bytes(reversed(data[len(prefix) :]))


def encrypted(directory: Path) -> FileStore:
    return FileStore(directory, cipher=Showing())  # type: ignore[arg-type]


class TestPlaintextLeftovers:
    """`encrypt = "systemd-creds"` turned on over a plain file store: the plain files are
    named, can be encrypted in place, and `logout` deletes them."""

    def test_the_plain_files_are_named(self, directory: Path) -> None:
        plain = FileStore(directory)
        plain.save(document())
        plain.save_client_secret("default", "s3cret")
        store = encrypted(directory)

        assert store.load("default") is None  # never read again: the account looks logged out
        assert store.plaintext_leftovers("default") == [
            str(directory / "default.json"),
            str(directory / "default.client_secret"),
        ]
        assert plain.plaintext_leftovers("default") == []  # without encryption they are the store

    def test_migrate_encrypt_in_place(self, directory: Path) -> None:
        plain = FileStore(directory)
        plain.save(document())
        plain.save_client_secret("default", "s3cret")
        store = encrypted(directory)

        assert move_account("default", store.unencrypted(), store) == ["tokens", "client secret"]
        assert store.load("default") == document()
        assert store.load_client_secret("default") == "s3cret"
        assert store.plaintext_leftovers("default") == []
        assert sorted(path.name for path in directory.iterdir()) == [
            "default.client_secret.cred",
            "default.json.cred",
        ]
        assert b"tvmaniac-refreshd/tokens" not in (directory / "default.json.cred").read_bytes()

    def test_logout_deletes_both_names(self, directory: Path) -> None:
        plain = FileStore(directory)
        plain.save(document())
        plain.save_client_secret("default", "s3cret")
        store = encrypted(directory)
        store.save(document("b" * 64))

        deleted = store.delete_plaintext_leftovers("default")

        assert deleted == [
            str(directory / "default.json"),
            str(directory / "default.client_secret"),
        ]
        assert sorted(path.name for path in directory.iterdir()) == ["default.json.cred"]


class TestRewrite:
    """The refresher's write probe: the file written again with its own bytes."""

    def test_rewriting_keeps_the_bytes_and_seals_nothing(self, directory: Path) -> None:
        store = encrypted(directory)
        store.save(document())
        before = (directory / "default.json.cred").read_bytes()
        inode = (directory / "default.json.cred").stat().st_ino
        sealed: list[str] = []
        cipher = store._cipher
        assert cipher is not None

        def seal(name: str, data: bytes) -> bytes:
            sealed.append(name)
            return data

        cipher.encrypt = seal  # type: ignore[method-assign]

        store.rewrite(document())

        assert sealed == []  # no systemd-creds run for a probe
        assert (directory / "default.json.cred").read_bytes() == before
        assert (directory / "default.json.cred").stat().st_ino != inode  # really written

    def test_a_missing_file_fails_the_probe(self, directory: Path) -> None:
        with pytest.raises(StoreUnavailable):
            FileStore(directory).rewrite(document())
