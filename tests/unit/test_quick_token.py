"""The quick `token` path: it answers only while the full command's recorded decision holds."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvmaniac_refreshd import quick_token
from tvmaniac_refreshd.core.token_form import MAX_TOKEN_LENGTH, is_token_text
from tvmaniac_refreshd.storage import layout, quick_record
from tvmaniac_refreshd.storage.session_bus import Unsure
from tvmaniac_refreshd.storage.token_socket import public_document

NOW = 1_800_000_000
DOCUMENT = {
    "format": "tvmaniac-refreshd/tokens",
    "version": 1,
    "account": "default",
    "provider": "trakt",
    "fingerprint": "sha256:abc",
    "obtained_at": NOW - 100,
    "access_token": "access-1",
    "refresh_token": "refresh-1",
    "token_type": "bearer",
    "scope": "public",
    "created_at": NOW - 100,
    "expires_in": 604800,
    "expires_at": NOW - 100 + 604800,
}


class Machine:
    """A home with a config file, a state directory and a keyring stand-in."""

    def __init__(
        self, root: Path, monkeypatch: pytest.MonkeyPatch, *, daemon: bool = False
    ) -> None:
        """``daemon``: a running daemon answers (storage/token_socket.py) for every item that
        is a JSON object, as the real one sends it; the rest is read from the keyring."""
        self.config = root / "config.toml"
        self.config.write_text("[accounts.default]\n")
        home = root / "home"
        home.mkdir(mode=0o700)
        self.state = Path(layout.state_directory({"HOME": str(home)}))
        self.environ = {
            "TVMANIAC_REFRESHD_CONFIG": str(self.config),
            "HOME": str(home),
            "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent",
        }
        self.items: dict[str, str] = {"default": json.dumps(DOCUMENT)}
        self.reads: list[str] = []
        self.answered: list[str] = []
        self.daemon = daemon
        monkeypatch.setattr(quick_token, "read_item", self.read_item)
        monkeypatch.setattr(quick_token, "ask_daemon", self.ask_daemon)
        monkeypatch.setattr(quick_token, "may_choose_backend_explicitly", lambda *_: False)
        monkeypatch.setattr(quick_token, "adopt_session_bus", lambda _: None)

    def read_item(
        self,
        service: str,
        username: str,
        *,
        timeout: float | None = None,
        environ: Mapping[str, str] | None = None,
        encrypted: bool = True,
    ) -> str | None:
        assert service == "tvmaniac-refreshd"
        assert timeout is not None
        assert not encrypted  # the quick path prints the token anyway (module docstring)
        self.reads.append(username)
        item = self.items.get(username)
        if item == "unsure":
            raise Unsure
        return item

    def ask_daemon(self, state: str, account: str, bus: str) -> dict[str, object] | None:
        assert state == str(self.state)
        assert bus == self.environ["DBUS_SESSION_BUS_ADDRESS"]
        item = self.items.get(account)
        if not self.daemon or item is None or item == "unsure":
            return None
        document = public_document(item)
        if document is not None:
            self.reads.append(account)
            self.answered.append(account)
        return document

    def remember(self, *, account: str = "default", fresh_until: int = NOW + 1000) -> None:
        quick_record.remember(
            self.environ,
            config=quick_record.config_identity(str(self.config)),
            default_account="default",
            account=account,
            document_text=self.items[account],
            fresh_until=fresh_until,
        )

    def token(self, *argv: str, now: float = NOW) -> tuple[int | None, str]:
        out = io.StringIO()
        code = quick_token.attempt(
            argv or ("token",),
            self.environ,  # type: ignore[arg-type]
            out,
            platform="linux",
            clock=now,
        )
        return code, out.getvalue()


@pytest.fixture(params=["keyring", "daemon"])
def machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Machine:
    """Every rule below holds alike when a running daemon hands over the stored document."""
    return Machine(tmp_path, monkeypatch, daemon=request.param == "daemon")


def test_a_running_daemons_copy_is_used_before_the_keyring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = Machine(tmp_path, monkeypatch, daemon=True)
    machine.remember()

    assert machine.token() == (0, "access-1\n")
    assert machine.answered == ["default"]
    assert machine.reads == ["default"]  # the daemon's answer only: no keyring read


def test_a_daemons_copy_of_another_login_is_not_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon refreshed meanwhile: its copy's stamp is not the recorded one."""
    machine = Machine(tmp_path, monkeypatch, daemon=True)
    machine.remember()
    machine.items["default"] = json.dumps(dict(DOCUMENT, access_token="access-2", created_at=NOW))

    assert machine.token() == (None, "")
    assert machine.answered == ["default"]


def test_a_remembered_fresh_token_is_printed(machine: Machine) -> None:
    machine.remember()

    assert machine.token() == (0, "access-1\n")
    assert machine.token("--account", "default", "token") == (0, "access-1\n")
    assert machine.token("--config", str(machine.config), "token") == (0, "access-1\n")
    assert machine.token("--account=default", "token", "--min-valid=1h") == (0, "access-1\n")


def test_global_options_after_the_verb_take_the_quick_path(machine: Machine) -> None:
    """`token --account X --config Y` is as quick as the options before the verb."""
    machine.remember()

    assert machine.token("token", "--account", "default") == (0, "access-1\n")
    assert machine.token("token", "--config", str(machine.config)) == (0, "access-1\n")
    assert machine.token("token", "--min-valid", "1h", "--account=default") == (0, "access-1\n")
    assert machine.token("--config", str(machine.config), "token", "--account", "default") == (
        0,
        "access-1\n",
    )


def test_without_a_record_the_full_command_decides(machine: Machine) -> None:
    assert machine.token() == (None, "")
    assert machine.reads == []


@pytest.mark.parametrize(
    "argv",
    [
        ("token", "-v"),
        ("-v", "token"),
        ("token", "--help"),
        ("--acc", "default", "token"),  # argparse's abbreviations are the full command's
        ("--account", "token"),
        ("--account", "-x", "token"),
        ("token", "--min-valid"),
        ("token", "--min-valid", "soon"),
        ("token", "token"),
        ("status",),
        ("--config", "", "token"),
        ("--min-valid", "1h", "token"),  # a verb's option before the verb is an error
        ("--account", "a", "token", "--account", "b"),  # twice: the parser decides
        ("token", "--account"),
        (),
    ],
)
def test_anything_but_a_plain_token_command_line_goes_to_the_full_command(
    machine: Machine, argv: tuple[str, ...]
) -> None:
    machine.remember()
    out = io.StringIO()

    assert quick_token.attempt(argv, machine.environ, out, platform="linux", clock=NOW) is None  # type: ignore[arg-type]
    assert out.getvalue() == ""


def test_a_due_token_goes_to_the_full_command(machine: Machine) -> None:
    machine.remember(fresh_until=NOW + 10)

    assert machine.token(now=NOW + 9)[0] == 0
    assert machine.token(now=NOW + 10) == (None, "")


def test_min_valid_asks_the_expiry_not_the_due_time(machine: Machine) -> None:
    machine.remember(fresh_until=NOW - 1)  # past due, a week left
    left = DOCUMENT["expires_at"] - NOW  # type: ignore[operator]

    assert machine.token("token", "--min-valid", "1d") == (0, "access-1\n")
    assert machine.token("token", "--min-valid", f"{left}s")[0] == 0
    assert machine.token("token", "--min-valid", f"{left + 1}s") == (None, "")
    assert machine.token() == (None, "")


def test_a_changed_config_makes_the_record_stale(machine: Machine) -> None:
    machine.remember()
    machine.config.write_text("[accounts.default]\n[refresh]\nbefore = '6d'\n")

    assert machine.token() == (None, "")


def test_a_config_made_world_readable_goes_to_the_full_command(machine: Machine) -> None:
    """Issue 13, finding 7: `chmod` changes neither size nor mtime, but the full command warns."""
    machine.config.chmod(0o600)
    machine.remember()
    machine.config.chmod(0o644)

    assert machine.token() == (None, "")


def test_another_config_file_is_not_this_record(machine: Machine, tmp_path: Path) -> None:
    machine.remember()
    other = tmp_path / "other.toml"
    other.write_text(machine.config.read_text())

    assert machine.token("--config", str(other), "token") == (None, "")


@pytest.mark.parametrize("key", ["expires_at", "created_at", "expires_in", "fingerprint"])
def test_a_refreshed_or_new_login_is_not_the_remembered_token(machine: Machine, key: str) -> None:
    machine.remember()
    changed = dict(DOCUMENT, access_token="access-2")
    value = changed[key]
    changed[key] = value + 1 if isinstance(value, int) else "sha256:other"
    machine.items["default"] = json.dumps(changed)

    assert machine.token() == (None, "")


@pytest.mark.parametrize("where", ["state", "parent"])
def test_a_directory_others_can_write_goes_to_the_full_command(
    machine: Machine, where: str
) -> None:
    """Issue 22: the full command names the directory and exits 78; nothing is read there."""
    machine.remember()
    assert machine.token() == (0, "access-1\n")
    (machine.state if where == "state" else machine.state.parent).chmod(0o777)

    assert machine.token() == (None, "")
    assert machine.reads == ["default"]  # only the first, trusted, read


def test_a_fifo_as_the_record_goes_to_the_full_command(machine: Machine) -> None:
    """A FIFO at the record's place is refused at once: `token` never hangs on it."""
    machine.state.mkdir(parents=True, mode=0o700)
    os.mkfifo(machine.state / layout.QUICK_RECORD, 0o600)

    assert machine.token() == (None, "")


def test_a_recorded_rejection_goes_to_the_full_command(machine: Machine) -> None:
    machine.remember()
    (machine.state / "default.json").write_text(
        json.dumps({"version": 1, "reauth_token": "0123456789abcdef"})
    )
    (machine.state / "default.json").chmod(0o600)  # as StateFiles writes it

    assert machine.token() == (None, "")
    (machine.state / "default.json").write_text(json.dumps({"version": 1, "reauth_token": None}))
    assert machine.token() == (0, "access-1\n")
    (machine.state / "default.json").write_text("not json")
    assert machine.token() == (None, "")


@pytest.mark.parametrize("item", [None, "unsure", "not json", "[]", '{"format": 1}'])
def test_a_missing_unreadable_or_foreign_item_goes_to_the_full_command(
    machine: Machine, item: str | None
) -> None:
    machine.remember()
    machine.items["default"] = item  # type: ignore[assignment]

    assert machine.token() == (None, "")


def test_a_token_of_the_wrong_form_is_never_printed(machine: Machine) -> None:
    machine.items["default"] = json.dumps(dict(DOCUMENT, access_token="two\nlines"))
    machine.remember()

    assert machine.token() == (None, "")


def test_an_explicit_keyring_backend_goes_to_the_full_command(
    machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine.remember()
    monkeypatch.setattr(quick_token, "may_choose_backend_explicitly", lambda *_: True)

    assert machine.token() == (None, "")
    assert machine.reads == []


def test_the_default_account_and_other_accounts(machine: Machine) -> None:
    machine.items["work"] = json.dumps(dict(DOCUMENT, access_token="access-work"))
    machine.remember()
    machine.remember(account="work")

    assert machine.token() == (0, "access-1\n")
    assert machine.token("--account", "work", "token") == (0, "access-work\n")
    assert machine.token("--account", "home", "token") == (None, "")


def test_the_account_from_the_environment(machine: Machine) -> None:
    """$TVMANIAC_REFRESHD_ACCOUNT chooses as in the full command; --account beats it."""
    machine.items["work"] = json.dumps(dict(DOCUMENT, access_token="access-work"))
    machine.remember()
    machine.remember(account="work")
    machine.environ["TVMANIAC_REFRESHD_ACCOUNT"] = "work"

    assert machine.token() == (0, "access-work\n")
    assert machine.token("token", "--account", "default") == (0, "access-1\n")


def test_remember_starts_over_when_the_config_changed(machine: Machine) -> None:
    machine.items["work"] = json.dumps(DOCUMENT)
    machine.remember(account="work")
    machine.config.write_text("[accounts.default]\n\n")
    machine.remember()

    record = json.loads((machine.state / layout.QUICK_RECORD).read_text())
    assert list(record["accounts"]) == ["default"]
    assert record["config"] == quick_record.config_identity(str(machine.config))


def test_remember_does_not_rewrite_an_unchanged_record(machine: Machine) -> None:
    machine.remember()
    path = machine.state / layout.QUICK_RECORD
    os.utime(path, ns=(1, 1))
    machine.remember()

    assert path.stat().st_mtime_ns == 1
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_the_record_holds_no_secret(machine: Machine) -> None:
    machine.remember()
    text = (machine.state / layout.QUICK_RECORD).read_text()

    assert "access-1" not in text
    assert "refresh-1" not in text


# RFC 6750's b64token, as the token parser used to check it with a regular expression.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


@given(st.text(max_size=MAX_TOKEN_LENGTH + 2))
def test_token_form_is_visible_ascii(value: str) -> None:
    expected = bool(_TOKEN_CHARS.fullmatch(value)) and len(value) <= MAX_TOKEN_LENGTH
    assert is_token_text(value) == expected


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F)))
def test_token_form_is_visible_ascii_on_ascii(value: str) -> None:
    expected = bool(_TOKEN_CHARS.fullmatch(value)) and len(value) <= MAX_TOKEN_LENGTH
    assert is_token_text(value) == expected


def test_a_stamp_of_the_wrong_type_is_no_answer(machine: Machine) -> None:
    machine.items["default"] = json.dumps(dict(DOCUMENT, expires_at="soon"))
    machine.remember()

    assert machine.token() == (None, "")
    assert machine.token("token", "--min-valid", "1m") == (None, "")


def test_a_bug_in_the_shortcut_falls_back_to_the_full_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tvmaniac_refreshd import entry  # noqa: PLC0415
    from tvmaniac_refreshd.cli import parser as cli  # noqa: PLC0415

    def broken(*_: object, **__: object) -> int | None:
        raise KeyError("bug")

    monkeypatch.setattr(quick_token, "attempt", broken)
    monkeypatch.setattr(cli, "main", lambda: 7)

    assert entry.main() == 7
