"""Log outputs: ``<N>`` lines for a daemon without journald, logfmt/console otherwise, redaction."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tvmaniac_refreshd.core.journal import JournalSender
from tvmaniac_refreshd.core.logs import (
    REDACTED,
    configure_logging,
    get_logger,
    redact_text,
    register_secret,
    shown,
    strip_controls,
)


def fail_with(error: Exception) -> NoReturn:
    """Raise ``error`` from a real frame, so that its traceback has something to show."""
    raise error


class TtyStream(io.StringIO):
    """An in-memory stream that claims to be a terminal."""

    def isatty(self) -> bool:
        """Pretend to be a terminal."""
        return True


def lines(stream: io.StringIO) -> list[str]:
    """The lines written so far."""
    return stream.getvalue().splitlines()


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A real pipe (read end, write end)."""
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    os.close(read_fd)
    os.close(write_fd)


def test_daemon_without_journal_prefixes_priorities() -> None:
    """Each record is one line with its sd-daemon priority prefix, event first."""
    out = io.StringIO()
    configure_logging(daemon=True, stream=out, environ={})
    log = get_logger(account="default")
    log.info("refresh.finished", outcome="refreshed", expires_at="2026-03-01T10:00:00Z")
    log.warning("refresh.retry", attempt=2)
    log.error("refresh.failed", reason="invalid_grant")
    got = lines(out)
    assert len(got) == 3
    assert got[0].startswith(
        "<6>refresh.finished account=default outcome=refreshed expires_at=2026-03-01T10:00:00Z "
    )
    assert got[1].startswith("<4>refresh.retry account=default attempt=2 ")
    assert got[2].startswith("<3>refresh.failed account=default reason=invalid_grant ")
    assert all(" timestamp=" in line for line in got)


def test_daemon_without_journal_collapses_exception_to_one_line() -> None:
    """A traceback stays on the record's single line, so journald keeps it as one entry."""
    out = io.StringIO()
    configure_logging(daemon=True, stream=out, environ={})
    try:
        fail_with(RuntimeError("keyring locked"))
    except RuntimeError:
        get_logger(account="default").exception("refresh.crashed")
    got = lines(out)
    assert len(got) == 1
    assert got[0].startswith("<3>refresh.crashed account=default exception=")
    assert "Traceback (most recent call last):\\n" in got[0]
    assert "RuntimeError: keyring locked" in got[0]


def test_daemon_critical_and_debug_priorities() -> None:
    """critical maps to <2>; debug is hidden at verbosity 0 and <7> at verbosity 1."""
    out = io.StringIO()
    configure_logging(daemon=True, stream=out, environ={})
    get_logger().debug("scheduler.tick")
    get_logger().critical("daemon.fatal")
    configure_logging(1, daemon=True, stream=out, environ={})
    get_logger().debug("scheduler.tick")
    got = lines(out)
    assert [line[:3] for line in got] == ["<2>", "<7>"]


def test_daemon_with_foreign_journal_stream_uses_lines(
    tmp_path: Path, pipe: tuple[int, int]
) -> None:
    """A ``$JOURNAL_STREAM`` that is not our stream's dev:ino does not switch to native entries."""
    stat = os.fstat(pipe[1])
    sock = tmp_path / "journal.sock"
    sock.touch()
    with (tmp_path / "daemon.log").open("w") as out:
        configure_logging(
            daemon=True,
            stream=out,
            environ={"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"},
            journal=JournalSender(str(sock)),
        )
        get_logger().info("daemon.started")
    assert (tmp_path / "daemon.log").read_text().startswith("<6>daemon.started ")


def test_daemon_without_journal_socket_falls_back_to_lines(
    tmp_path: Path, pipe: tuple[int, int]
) -> None:
    """Even when stderr is journald's stream, a missing native socket means lines on stderr."""
    stat = os.fstat(pipe[1])
    with os.fdopen(os.dup(pipe[1]), "w") as out:
        configure_logging(
            daemon=True,
            stream=out,
            environ={"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"},
            journal=JournalSender(str(tmp_path / "absent.sock")),
        )
        get_logger().info("daemon.started")
    assert os.read(pipe[0], 4096).startswith(b"<6>daemon.started ")


def test_interactive_logfmt_unchanged_when_not_a_tty() -> None:
    """Without daemon=True a non-terminal gets today's logfmt line, no priority prefix."""
    out = io.StringIO()
    configure_logging(stream=out)
    get_logger(account="default").info("refresh.finished", outcome="refreshed")
    got = lines(out)
    assert len(got) == 1
    assert got[0].startswith("timestamp=")
    assert " level=info event=refresh.finished account=default outcome=refreshed" in got[0]
    assert "<6>" not in got[0]


def test_interactive_quiet_shows_no_record() -> None:
    """quiet (an interactive command without -v) shows no log record, not even an error: the
    command says what happened in its own sentences; a warning's ``say`` is one of them."""
    out = io.StringIO()
    configure_logging(stream=out, quiet=True)
    get_logger().info("status.read")
    get_logger(account="work").warning("status.stale", error="a b")
    get_logger(account="work").error("refresh.finished", outcome="rejected")
    get_logger(account="work").warning("token.odd", problems="x", say="the answer was odd")
    assert lines(out) == ["tvmaniac-refreshd: warning: the answer was odd"]


def test_interactive_verbose_shows_log_records() -> None:
    """With -v an interactive command shows every record, info and debug included."""
    out = io.StringIO()
    configure_logging(1, stream=out, quiet=True)
    get_logger().debug("login.slow_down", interval=6.0)
    get_logger().info("login.finished")
    got = lines(out)
    assert len(got) == 2
    assert "event=login.slow_down" in got[0]
    assert "interval=6.0" in got[0]


def test_interactive_console_on_a_tty() -> None:
    """A terminal gets structlog's console renderer, without colours."""
    out = TtyStream()
    configure_logging(stream=out)
    get_logger(account="default").info("refresh.finished")
    text = out.getvalue()
    assert "refresh.finished" in text
    assert "[info" in text
    assert "account=default" in text
    assert "\x1b[" not in text


@pytest.mark.parametrize("daemon", [False, True])
@pytest.mark.parametrize("key", ["access_token", "refresh_token", "client_secret", "Authorization"])
def test_secret_named_fields_are_masked(daemon: bool, key: str) -> None:
    """A field with a secret's name is masked whatever its value, on every output."""
    out = io.StringIO()
    configure_logging(stream=out, daemon=daemon, environ={})
    value = "unregistered-value-1234"
    get_logger().info("oauth.response", **{key: value})
    assert value not in out.getvalue()
    assert f"{key}={REDACTED}" in out.getvalue()


@pytest.mark.parametrize("daemon", [False, True])
def test_registered_secret_is_cut_from_free_text(daemon: bool) -> None:
    """A registered token inside any value is replaced, on every output."""
    out = io.StringIO()
    configure_logging(stream=out, daemon=daemon, environ={})
    token = "at-logs-free-text-99ab77cd"
    register_secret(token)
    get_logger(account="default").warning("oauth.error", body=f'{{"echo": "{token}"}}')
    assert token not in out.getvalue()
    assert REDACTED in out.getvalue()


def test_registered_secret_is_cut_from_daemon_traceback() -> None:
    """A token in an exception message does not leak through the collapsed traceback."""
    out = io.StringIO()
    configure_logging(daemon=True, stream=out, environ={})
    token = "rt-in-exception-5566aabb"
    register_secret(token)
    try:
        fail_with(ValueError(f"rejected {token}"))
    except ValueError:
        get_logger().exception("refresh.crashed")
    assert token not in out.getvalue()
    assert f"ValueError: rejected {REDACTED}" in out.getvalue()


def test_redact_text_and_short_values() -> None:
    """redact_text replaces registered secrets; short ones only where they stand alone."""
    register_secret("short")
    register_secret(None)
    register_secret("long-enough-secret-42")
    assert redact_text("short and long-enough-secret-42") == f"{REDACTED} and {REDACTED}"
    assert redact_text("shortcut, a-short-word") == "shortcut, a-short-word"


def test_the_longest_secret_is_replaced_first() -> None:
    """Issue 13, finding 5: a secret inside a token left the rest of the token readable."""
    token = "AbCdEfGh-client-secret-1-IjKlMnOpQrStUvWx"
    register_secret("client-secret-1")
    register_secret(token)

    assert redact_text(f"echo: {token}") == f"echo: {REDACTED}"


def test_a_short_secret_standing_alone_is_redacted() -> None:
    """Issue 13, finding 5: secrets under 8 characters were never redacted."""
    register_secret("s3cr3t")

    assert redact_text("client_secret=s3cr3t was sent") == f"client_secret={REDACTED} was sent"
    assert redact_text('{"client_secret": "s3cr3t"}') == f'{{"client_secret": "{REDACTED}"}}'


def test_control_characters_are_replaced() -> None:
    assert strip_controls("bad\x1b[2J\r\nall good\u202e") == "bad?[2J??all good?"
    # Our own multi-line messages (a config's problems) keep their lines.
    assert shown("bad\x1b[2J\r\n  - all good\u202e") == "bad?[2J?\n  - all good?"


def test_redaction_is_safe_while_secrets_are_added_concurrently() -> None:
    """Registering secrets on one thread while redacting on others never raises."""
    import threading  # noqa: PLC0415

    from tvmaniac_refreshd.core.logs import MAX_KNOWN_SECRETS, redact_text, register_secret  # noqa: PLC0415

    errors: list[BaseException] = []
    stop = threading.Event()

    def redact_forever() -> None:
        try:
            while not stop.is_set():
                redact_text("nothing secret here")
        except BaseException as exc:  # the test reports whatever escapes
            errors.append(exc)

    readers = [threading.Thread(target=redact_forever) for _ in range(4)]
    for reader in readers:
        reader.start()
    for index in range(3 * MAX_KNOWN_SECRETS):
        register_secret(f"concurrent-secret-{index:06d}")
    stop.set()
    for reader in readers:
        reader.join(30)

    assert errors == []
    assert redact_text(f"concurrent-secret-{3 * MAX_KNOWN_SECRETS - 1:06d}") == "[redacted]"


QUIET_THEN = (
    "import sys\n"
    "from tvmaniac_refreshd.core.logs import configure_logging, get_logger\n"
    "configure_logging(quiet=True)\n"
    "get_logger(account='a').{method}('an.event', n=1)\n"
    "print('structlog' in sys.modules)\n"
)


@pytest.mark.parametrize(
    ("method", "loaded", "shown"), [("info", False, False), ("error", True, False)]
)
def test_a_record_below_the_level_does_not_load_structlog(
    method: str, loaded: bool, shown: bool
) -> None:
    """A quiet command's info line is dropped as structlog would, without importing it."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    result = subprocess.run(
        [sys.executable, "-c", QUIET_THEN.format(method=method)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.stdout.strip() == str(loaded)
    assert ("an.event" in result.stderr) is shown, result.stderr


def test_an_accounts_tokens_are_kept_until_replaced_twice() -> None:
    """Per account, the current token and the one it replaced; never a cap on accounts."""
    from tvmaniac_refreshd.core.logs import (  # noqa: PLC0415
        MAX_KNOWN_SECRETS,
        redact_text,
        register_secret,
    )

    for index in range(2 * MAX_KNOWN_SECRETS):
        register_secret(f"token-of-account-{index:06d}", account=f"a{index}", kind="access")
    register_secret("first-token-xxxxxxxx", account="rotating", kind="access")
    register_secret("second-token-xxxxxxxx", account="rotating", kind="access")

    assert redact_text("token-of-account-000000") == REDACTED
    assert redact_text("first-token-xxxxxxxx second-token-xxxxxxxx") == f"{REDACTED} {REDACTED}"
    register_secret("third-token-xxxxxxxx", account="rotating", kind="access")
    assert redact_text("first-token-xxxxxxxx") == "first-token-xxxxxxxx"  # replaced twice
    assert redact_text("second-token-xxxxxxxx third-token-xxxxxxxx") == f"{REDACTED} {REDACTED}"


def test_a_secret_held_twice_stays_until_both_let_go() -> None:
    from tvmaniac_refreshd.core.logs import redact_text, register_secret  # noqa: PLC0415

    register_secret("shared-secret-xxxxxxxx", account="a", kind="client_secret")
    register_secret("shared-secret-xxxxxxxx", account="b", kind="client_secret")
    register_secret("other-secret-1-xxxxxxxx", account="a", kind="client_secret")
    register_secret("other-secret-2-xxxxxxxx", account="a", kind="client_secret")

    assert redact_text("shared-secret-xxxxxxxx") == REDACTED  # b still holds it


def test_a_secret_inside_a_longer_one_never_uncovers_the_rest() -> None:
    """Longest first, whatever the order they come in."""
    from tvmaniac_refreshd.core.logs import redact_text, register_secret  # noqa: PLC0415

    register_secret("abcdefgh", account="a", kind="access")
    register_secret("xxabcdefghyy", account="b", kind="access")
    register_secret("abcdefghij", account="c", kind="access")

    assert redact_text("xxabcdefghyy abcdefghij") == f"{REDACTED} {REDACTED}"


def test_many_secrets_are_found_as_few_are() -> None:
    """Past INDEXED_FROM secrets a line is searched through an index of their beginnings; it
    finds what the plain search finds, overlaps and embedded secrets included."""
    import random  # noqa: PLC0415

    from tvmaniac_refreshd.core.logs import (  # noqa: PLC0415
        INDEXED_FROM,
        redact_text,
        register_secret,
    )

    pick = random.Random(28)  # noqa: S311 (test data, repeatable)
    alphabet = "abcdefgh0123456789-._"
    secrets = ["".join(pick.choices(alphabet, k=pick.randint(8, 40))) for _ in range(400)]
    secrets += ["xxabcdefghyy", "abcdefgh", "abcdefghij", "12345678abcd", "5678abcdefgh"]
    texts = [
        " ".join(pick.choice(secrets) + "".join(pick.choices(alphabet, k=3)) for _ in range(4))
        for _ in range(200)
    ]
    texts += ["xxabcdefghyy abcdefghij", "12345678abcdefgh", "nothing here"]

    def plain(text: str) -> str:
        for secret in sorted(set(secrets), key=lambda secret: (-len(secret), secret)):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    for index, secret in enumerate(secrets):
        register_secret(secret, account=f"a{index}", kind="access")

    assert len(set(secrets)) >= INDEXED_FROM
    for text in texts:
        assert redact_text(text) == plain(text), text
