"""The real command against the Trakt emulator and a real Secret Service (gnome-keyring)."""

from __future__ import annotations

import json
import threading

import pytest

from tests.support.harness import CLIENT_ID, CLIENT_SECRET, Harness
from tests.support.keyring_session import KeyringSession

LIFETIME = 604800


def token_requests(harness: Harness) -> list[dict[str, object]]:
    return harness.emulator.requests("/oauth/token")


class TestLogin:
    def approve_when_pending(self, harness: Harness, *, deny: bool = False) -> threading.Thread:
        def act() -> None:
            code = harness.emulator.wait_for_user_code(timeout=30)
            if deny:
                harness.emulator.deny(code)
            else:
                harness.emulator.approve(code)

        thread = threading.Thread(target=act, daemon=True)
        thread.start()
        return thread

    def test_device_login_stores_tokens(self, harness: Harness) -> None:
        """Pending polls, then approval: the tokens land in the real keyring."""
        self.approve_when_pending(harness)
        run = harness.run("login")

        assert run.code == 0, run.err
        assert "enter the code:" in run.out
        assert "Logged in" in run.out
        stored = harness.stored()
        assert stored is not None
        grant = harness.emulator.state()["grants"][0]  # type: ignore[index]
        assert stored["refresh_token"] == grant["refresh_token"]
        assert stored["expires_in"] == LIFETIME
        assert stored["format"] == "tvmaniac-refreshd/tokens"
        polls = harness.emulator.requests("/oauth/device/token")
        assert polls[0]["body"] == {
            "code": polls[0]["body"]["code"],  # type: ignore[index]
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }

    def test_slow_down_is_obeyed(self, harness: Harness) -> None:
        """A 429 during polling widens the interval and the login still completes."""
        harness.emulator.add_fault(
            {
                "kind": "body",
                "code": 429,
                "content_type": "text/plain",
                "body": "",
                "path": "/oauth/device/token",
            }
        )
        self.approve_when_pending(harness)
        run = harness.run("-v", "login")

        assert run.code == 0, run.err
        assert "login.slow_down" in run.err
        assert "interval=6.0" in run.err

    def test_denied(self, harness: Harness) -> None:
        """A denied code ends the login with exit 1 and nothing stored."""
        self.approve_when_pending(harness, deny=True)
        run = harness.run("login")

        assert (run.code, harness.stored()) == (1, None)
        assert "denied" in run.err

    def test_expired(self, harness: Harness) -> None:
        """Nobody approves: the login stops when the code expires."""
        harness.emulator.configure(device_expires_in=2)
        run = harness.run("login")

        assert run.code == 1
        assert "expired" in run.err
        assert harness.stored() is None

    def test_dropped_connection_does_not_abort(self, harness: Harness) -> None:
        """One dropped connection while polling is ridden out."""
        harness.emulator.add_fault({"kind": "drop", "path": "/oauth/device/token"})
        self.approve_when_pending(harness)

        assert harness.run("login").code == 0

    def test_unknown_client(self, harness: Harness) -> None:
        """A client_id the provider does not know is a configuration error (78)."""
        harness.write_config(harness.config_path.read_text().replace(CLIENT_ID, "someone-else"))
        run = harness.run("login")

        assert run.code == 78
        assert "client_id" in run.err


class TestToken:
    def test_fresh_token_makes_no_request(self, harness: Harness) -> None:
        """A token that is not due is printed without any network request."""
        grant = harness.seed()
        run = harness.run("token")

        assert (run.code, run.out, run.err) == (0, f"{grant['access_token']}\n", "")
        assert harness.emulator.counters()["requests"] == 0

    def test_due_token_refreshed_once(self, harness: Harness) -> None:
        """A due token is refreshed with one request of the right shape, stored, then printed."""
        grant = harness.seed(age=0.8 * LIFETIME)
        run = harness.run("token")

        assert run.code == 0, run.err
        requests = token_requests(harness)
        assert len(requests) == 1
        assert requests[0]["body"] == {
            "refresh_token": grant["refresh_token"],
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": "urn:ietf:wg:oauth:2.0:oob",
            "grant_type": "refresh_token",
        }
        headers = {k.lower(): v for k, v in requests[0]["headers"].items()}  # type: ignore[attr-defined]
        assert headers["user-agent"].startswith("tvmaniac-refreshd/")
        assert headers["trakt-api-version"] == "2"
        assert headers["content-type"] == "application/json"
        current = harness.emulator.state()["grants"][0]  # type: ignore[index]
        assert run.out == f"{current['access_token']}\n"
        stored = harness.stored()
        assert stored is not None
        assert stored["refresh_token"] == current["refresh_token"]

    def test_min_valid(self, harness: Harness) -> None:
        """--min-valid longer than what remains forces a refresh."""
        harness.seed()

        assert harness.run("token", "--min-valid", "7d").code == 0
        assert len(token_requests(harness)) == 1

    def test_ten_parallel_processes_refresh_once(self, harness: Harness) -> None:
        """Ten `token` processes on a due token: one refresh, one new token, no invalid_grant."""
        harness.seed(age=0.8 * LIFETIME)
        harness.emulator.add_fault({"kind": "delay", "seconds": 0.5, "path": "/oauth/token"})
        processes = [harness.spawn("token") for _ in range(10)]
        runs = [harness.finish(process, ("token",)) for process in processes]

        assert [run.code for run in runs] == [0] * 10, [run.err for run in runs]
        assert len({run.out for run in runs}) == 1
        current = harness.emulator.state()["grants"][0]  # type: ignore[index]
        assert runs[0].out == f"{current['access_token']}\n"
        counters = harness.emulator.counters()
        assert (counters["refresh_success"], counters["invalid_grant"]) == (1, 0)

    def test_transient_failure_prints_still_valid_token(self, harness: Harness) -> None:
        """A due but valid token is still handed out when the refresh fails for a passing reason."""
        grant = harness.seed(age=0.8 * LIFETIME)
        harness.emulator.add_fault({"kind": "status", "code": 503})
        run = harness.run("token")

        assert (run.code, run.out) == (0, f"{grant['access_token']}\n")
        assert "still valid" in run.err

    def test_not_logged_in(self, harness: Harness) -> None:
        """Without tokens, `token` exits 77 and says to log in."""
        run = harness.run("token")

        assert (run.code, run.out) == (77, "")
        assert "login" in run.err


TRANSIENT_FAULTS = [
    {"kind": "drop"},
    {"kind": "status", "code": 500},
    {"kind": "status", "code": 502},
    {"kind": "status", "code": 503},
    {"kind": "status", "code": 504},
    {"kind": "status", "code": 408},
    {"kind": "cloudflare", "code": 520},
    {"kind": "cloudflare", "code": 521},
    {"kind": "cloudflare", "code": 522},
    {"kind": "cloudflare", "code": 523},
    {"kind": "cloudflare", "code": 524},
    {"kind": "ratelimit", "retry_after": 143},
    {"kind": "ratelimit", "retry_after": None},
    {"kind": "html", "code": 200},
    {"kind": "truncate"},
    {"kind": "huge"},
    # Far longer than the client's 3 s read timeout: the emulator, like a real server, answers
    # the abandoned request when the delay ends and spends the token then, so with a short
    # delay the retry below raced it (flaky under load). Stopping the emulator wakes it unspent.
    {"kind": "delay", "seconds": 120},
    {"kind": "trickle", "interval": 0.5, "max_seconds": 20},
]
# A 200 that does not fit is a compatibility problem: 1, not "try again later".
INCOMPATIBLE_ANSWERS = ['{"access_token": 1}', "[]"]


class TestRefresh:
    @pytest.mark.parametrize(
        "fault", TRANSIENT_FAULTS, ids=lambda f: "-".join(map(str, f.values()))[:40]
    )
    def test_transient_fault(self, harness: Harness, fault: dict[str, object]) -> None:
        """Each passing fault: exit 75, tokens intact, and the next run succeeds."""
        grant = harness.seed()
        harness.emulator.add_fault({**fault, "path": "/oauth/token"})
        failed = harness.run("refresh", "--force")

        assert failed.code == 75, failed.err
        stored = harness.stored()
        assert stored is not None
        assert stored["refresh_token"] == grant["refresh_token"]
        retried = harness.run("refresh", "--force")
        assert retried.code == 0, retried.err
        assert "default: refreshed" in retried.out

    @pytest.mark.parametrize("answer", INCOMPATIBLE_ANSWERS)
    def test_incompatible_answer(self, harness: Harness, answer: str) -> None:
        """Exit 1 naming what is wrong, tokens intact, and the next run succeeds."""
        grant = harness.seed()
        harness.emulator.add_fault(
            {"kind": "body", "code": 200, "content_type": "application/json", "body": answer}
            | {"path": "/oauth/token"}
        )
        failed = harness.run("refresh", "--force")

        assert failed.code == 1, failed.err
        assert "could not be used" in failed.err
        stored = harness.stored()
        assert stored is not None
        assert stored["refresh_token"] == grant["refresh_token"]
        assert harness.run("refresh", "--force").code == 0

    def test_a_usable_pair_with_a_bad_lifetime_is_kept(self, harness: Harness) -> None:
        """The 200 spent the old refresh token: its pair is kept, with the default lifetime."""
        harness.seed()
        harness.emulator.add_fault(
            {
                "kind": "body",
                "code": 200,
                "content_type": "application/json",
                "body": '{"access_token":"a","refresh_token":"b","token_type":"bearer",'
                '"scope":"public","created_at":1,"expires_in":-5}',
                "path": "/oauth/token",
            }
        )
        run = harness.run("refresh", "--force")

        assert run.code == 0, run.err
        assert "expires_in=-5 is outside" in run.err
        stored = harness.stored()
        assert stored is not None
        assert (stored["access_token"], stored["refresh_token"], stored["expires_in"]) == (
            "a",
            "b",
            3600,
        )

    def test_connection_refused(self, harness: Harness) -> None:
        """Nothing listening: exit 75 and the tokens are kept."""
        harness.write_config(
            harness.config_path.read_text().replace(harness.emulator.url, "http://127.0.0.1:9")
        )
        harness.seed()
        run = harness.run("refresh", "--force")

        assert run.code == 75
        assert "could not connect" in run.err
        assert harness.stored() is not None

    def test_tls_failure(self, harness: Harness) -> None:
        """A TLS handshake that fails is a temporary failure, not a crash."""
        url = harness.emulator.url.replace("http://127.0.0.1", "https://localhost")
        harness.write_config(harness.config_path.read_text().replace(harness.emulator.url, url))
        harness.seed()
        run = harness.run("refresh", "--force")

        assert run.code == 75, run.err

    def test_not_due(self, harness: Harness) -> None:
        """`refresh` without --force leaves a fresh token alone and says when it is due."""
        harness.seed()
        run = harness.run("refresh")

        assert run.code == 0
        assert "default: not due" in run.out
        assert harness.emulator.counters()["requests"] == 0

    @pytest.mark.parametrize("option", [{}, {"legacy_401": True}])
    def test_rejection_needs_login(self, harness: Harness, option: dict[str, bool]) -> None:
        """invalid_grant: exit 77, reauth_required, and no further requests until login."""
        harness.emulator.configure(**option)
        grant = harness.seed(age=0.8 * LIFETIME)
        harness.emulator.revoke_grant("alice")
        run = harness.run("refresh")

        assert run.code == 77, run.err
        assert "login" in run.err
        status = json.loads(harness.run("status", "--json").out)
        assert status["accounts"][0]["state"] == "reauth_required"
        before = harness.emulator.counters()["requests"]
        assert harness.run("refresh", "--force").code == 77
        assert harness.run("token").code == 77
        assert harness.emulator.counters()["requests"] == before
        stored = harness.stored()
        assert stored is not None
        assert stored["refresh_token"] == grant["refresh_token"]

    def test_invalid_client_is_configuration(self, harness: Harness) -> None:
        """A wrong client secret is reported as configuration (78), not as a lost session."""
        harness.seed()
        harness.write_config(
            harness.config_path.read_text().replace(CLIENT_SECRET, "wrong-secret-1")
        )
        run = harness.run("refresh", "--force")

        assert run.code == 78
        assert "client_id and client_secret" in run.err
        status = json.loads(harness.run("status", "--json").out)
        assert status["accounts"][0]["state"] == "active"

    def test_locked_user(self, harness: Harness) -> None:
        """A 423 locked account keeps the tokens and says to contact support."""
        harness.seed()
        harness.emulator.add_fault(
            {
                "kind": "body",
                "code": 423,
                "content_type": "application/json",
                "body": "{}",
                "headers": {"X-Account-Locked": "true"},
                "path": "/oauth/token",
            }
        )
        run = harness.run("refresh", "--force")

        assert run.code == 1
        assert "locked" in run.err
        assert harness.run("refresh", "--force").code == 0


class TestLogout:
    def test_revokes_and_deletes(self, harness: Harness) -> None:
        """Logout revokes the access token at the provider and removes the keyring item."""
        grant = harness.seed()
        run = harness.run("logout")

        assert run.code == 0, run.err
        assert harness.stored() is None
        revokes = harness.emulator.requests("/oauth/revoke")
        assert len(revokes) == 1
        assert revokes[0]["body"] == {
            "token": grant["access_token"],
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
        assert harness.emulator.state()["grants"][0]["revoked"]  # type: ignore[index]
        assert json.loads(harness.run("status", "--json").out)["accounts"][0]["state"] == (
            "logged_out"
        )

    def test_offline_still_deletes(self, harness: Harness) -> None:
        """With the provider unreachable, logout deletes locally, warns, and exits 0."""
        harness.seed()
        harness.emulator.add_fault({"kind": "drop", "path": "/oauth/revoke"})
        run = harness.run("logout")

        assert run.code == 0
        assert "warning: could not revoke" in run.err
        assert harness.stored() is None

    def test_twice(self, harness: Harness) -> None:
        """A second logout has nothing to do and still succeeds."""
        harness.seed()

        assert [harness.run("logout").code, harness.run("logout").code] == [0, 0]


class TestKeyringStates:
    def test_locked_keyring(self, harness: Harness) -> None:
        """A locked collection gives exit 69 with the fix, and no request."""
        harness.seed()
        harness.keyring.lock()
        run = harness.run("token")

        assert run.code == 69
        assert "locked" in run.err
        assert harness.emulator.counters()["requests"] == 0

    def test_no_session_bus(self, harness: Harness) -> None:
        """No D-Bus session at all gives exit 69 saying what to start."""
        env = harness.env()
        env.pop("DBUS_SESSION_BUS_ADDRESS")
        run = harness.run("token", env=env)

        assert run.code == 69
        assert "DBUS_SESSION_BUS_ADDRESS" in run.err

    def test_bus_without_secret_service(self, harness: Harness) -> None:
        """A session bus with no Secret Service on it gives exit 69, not a traceback."""
        with KeyringSession(secret_service=False) as empty:
            env = harness.env(DBUS_SESSION_BUS_ADDRESS=empty.env["DBUS_SESSION_BUS_ADDRESS"])
            run = harness.run("token", env=env)

        assert run.code == 69
        assert "Traceback" not in run.err

    def test_corrupt_item(self, harness: Harness) -> None:
        """A foreign item is reported, not overwritten, and status still works."""
        harness.put_item("default", "not-our-json")
        run = harness.run("token")

        assert run.code == 1
        assert "left untouched" in run.err
        status = harness.run("status", "--json")
        assert status.code == 0
        assert json.loads(status.out)["accounts"][0]["state"] == "reauth_required"
        assert harness.keyring.lookup("tvmaniac-refreshd", "default") == "not-our-json"
        assert harness.run("login").code == 1


class TestConfigErrors:
    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ("[accounts.default]\nprovider = 'trakt'\n", "accounts.default.client_id"),
            (
                "[accounts.default]\nprovider='trakt'\nclient_id='x'\nauth_url='ftp://x'\n",
                "accounts.default.auth_url",
            ),
            (
                "[refresh]\nthreshold = 2\n[accounts.a]\nprovider='trakt'\nclient_id='x'\n",
                "refresh.threshold",
            ),
            ("[acounts.default]\n", "acounts"),
            ("not toml at all [", "not valid TOML"),
        ],
    )
    @pytest.mark.parametrize("verb", ["token", "status", "refresh"])
    def test_bad_config(self, harness: Harness, text: str, key: str, verb: str) -> None:
        """Every verb exits 78 and names the key and the file."""
        harness.write_config(text)
        run = harness.run(verb)

        assert run.code == 78
        assert key in run.err
        assert str(harness.config_path) in run.err
        assert "Traceback" not in run.err


class TestStatusAndCheck:
    def test_status_json(self, harness: Harness) -> None:
        """--json has format_version 1 and the contract's fields, in ISO 8601 UTC."""
        harness.seed()
        status = json.loads(harness.run("status", "--json").out)

        assert status["format_version"] == 1
        account = status["accounts"][0]
        assert (account["name"], account["state"]) == ("default", "active")
        assert account["expires_at"].endswith("Z")
        assert account["refresh_due_at"].endswith("Z")

    def test_status_text_explains(self, harness: Harness) -> None:
        """The human status says what the state means and what to do."""
        run = harness.run("status")

        assert "default: logged_out" in run.out
        assert "Run `tvmaniac-refreshd login`" in run.out

    def test_config_check(self, harness: Harness) -> None:
        """config check reports the config, bus, keyring backend and each account."""
        harness.seed()
        run = harness.run("config", "check")

        assert run.code == 0, run.out
        assert "keyring.backends.SecretService.Keyring" in run.out
        assert "client secret from the config file; logged in" in run.out

    def test_set_secret_from_stdin(self, harness: Harness) -> None:
        """A client secret piped on stdin goes to the keyring, and is used from there."""
        harness.write_config(
            harness.config_path.read_text().replace(f'client_secret = "{CLIENT_SECRET}"\n', "")
        )
        assert harness.run("config", "set-secret", stdin=CLIENT_SECRET + "\n").code == 0
        harness.seed()

        run = harness.run("refresh", "--force")
        assert run.code == 0, run.err
        check = harness.run("config", "check")
        assert "client secret from the keyring" in check.out

    def test_usage_error(self, harness: Harness) -> None:
        """An unknown verb or bad duration is a usage error (2)."""

        assert harness.run("frobnicate").code == 2
        assert harness.run("token", "--min-valid", "soon").code == 2


class TestLeakCheck:
    def test_leak_check_catches_a_token(self, harness: Harness) -> None:
        """The end-of-test secret scan really finds a token in any output."""
        from tests.support.harness import Run  # noqa: PLC0415

        grant = harness.seed()
        harness.transcript.append(Run(("status",), 0, "", f"oops {grant['refresh_token']}"))

        assert harness.leaks() == ["status: a secret in stderr"]
        harness.transcript.pop()
