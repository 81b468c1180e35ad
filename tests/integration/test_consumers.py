"""The surfaces that hand the token to other programs, run for real against the emulator and
the private keyring: `token --json`, `exec`, and the Python API from a plain script."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.support.harness import CLIENT_ID, Harness

# CMD for `exec`: proves it got the token without printing it (the leak check reads stdout).
DIGEST_OF_VARIABLE = (
    "import hashlib, os, sys\n"
    "print(hashlib.sha256(os.environ[sys.argv[1]].encode()).hexdigest())\n"
    "sys.exit(int(sys.argv[2]))\n"
)


def digest(text: object) -> str:
    return hashlib.sha256(str(text).encode()).hexdigest()


def stored_access_token(harness: Harness) -> str:
    stored = harness.stored()
    assert stored is not None
    return str(stored["access_token"])


def reject_the_session(harness: Harness) -> None:
    """An expired token whose grant the provider has revoked: no valid token can be had."""
    harness.seed(age=604_800 + 60)
    harness.emulator.revoke_grant("alice")


class TestTokenJson:
    def test_full_and_quick_paths_print_the_same_object(self, harness: Harness) -> None:
        grant = harness.seed(age=3600)

        full = harness.run("token", "--json")
        quick = harness.run("token", "--json")

        assert full.code == quick.code == 0, full.err
        assert full.out == quick.out
        assert full.out.count("\n") == 1
        document = json.loads(full.out)
        stored = harness.stored()
        assert stored is not None
        assert document == {
            "format_version": 1,
            "account": "default",
            "access_token": grant["access_token"],
            "token_type": stored["token_type"],
            "expires_at": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(str(stored["expires_at"])))
            ),
        }

    def test_a_due_token_is_refreshed_first(self, harness: Harness) -> None:
        grant = harness.seed(age=6 * 86_400)  # 1 of 7 days left: due

        run = harness.run("token", "--json")

        assert run.code == 0, run.err
        assert json.loads(run.out)["access_token"] == stored_access_token(harness)
        assert stored_access_token(harness) != grant["access_token"]

    def test_a_rejected_session_exits_77_with_nothing_on_stdout(self, harness: Harness) -> None:
        reject_the_session(harness)

        run = harness.run("token", "--json")

        assert (run.code, run.out) == (77, "")


class TestExec:
    def run_exec(self, harness: Harness, *args: str, exit_code: int = 0) -> tuple[int, str, str]:
        run = harness.run(
            "exec", *args, "--", sys.executable, "-c", DIGEST_OF_VARIABLE, "ACCESS_TOKEN",
            str(exit_code),
        )  # fmt: skip
        return run.code, run.out, run.err

    def test_the_command_gets_the_token_in_its_environment(self, harness: Harness) -> None:
        grant = harness.seed(age=3600)

        code, out, _ = self.run_exec(harness)

        # Only CMD's own line on stdout: exec itself prints nothing.
        assert (code, out) == (0, digest(grant["access_token"]) + "\n")

    def test_another_variable_and_min_valid(self, harness: Harness) -> None:
        harness.seed(age=3600)

        run = harness.run(
            "exec", "--min-valid", "7d", "--env", "TRAKT_TOKEN", "--",
            sys.executable, "-c", DIGEST_OF_VARIABLE, "TRAKT_TOKEN", "0",
        )  # fmt: skip

        assert run.code == 0, run.err
        # More than the 6 days 23 hours left were asked for: refreshed first.
        assert run.out == digest(stored_access_token(harness)) + "\n"
        assert len(harness.emulator.requests("/oauth/token")) == 1

    def test_the_commands_exit_code_is_the_exit_code(self, harness: Harness) -> None:
        harness.seed(age=3600)

        assert self.run_exec(harness, exit_code=42)[0] == 42

    def test_the_command_runs_in_place_of_the_process(self, harness: Harness) -> None:
        """execve, not a child: CMD's pid is the one that was started."""
        harness.seed(age=3600)
        process = subprocess.Popen(
            [*harness.command("exec", "--", sys.executable, "-c", "import os; print(os.getpid())")],
            env=harness.env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = process.communicate(timeout=60)

        assert (process.returncode, out) == (0, f"{process.pid}\n")

    def test_a_command_that_does_not_exist_exits_127(self, harness: Harness) -> None:
        harness.seed(age=3600)

        run = harness.run("exec", "--", "no-such-command-tvmaniac")

        assert (run.code, run.out) == (127, "")
        assert "no-such-command-tvmaniac: command not found" in run.err
        assert harness.run("exec", "--", "/nonexistent/tool").code == 127

    def test_without_a_double_dash_or_a_command_it_is_a_usage_error(self, harness: Harness) -> None:
        harness.seed(age=3600)

        for args in (
            ("exec",),
            ("exec", "true"),
            ("exec", "--"),
            ("exec", "--env", "A-B", "--", "true"),
        ):
            run = harness.run(*args)
            assert (run.code, run.out) == (2, ""), args

    def test_no_valid_token_the_command_is_not_run(self, harness: Harness, tmp_path: Path) -> None:
        reject_the_session(harness)
        marker = tmp_path / "ran"

        run = harness.run("exec", "--", "touch", str(marker))

        assert (run.code, run.out) == (77, "")
        assert "login" in run.err
        assert not marker.exists()

    def test_a_locked_keyring_exits_69_and_the_command_is_not_run(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        harness.seed(age=3600)
        marker = tmp_path / "ran"
        harness.keyring.lock()
        try:
            run = harness.run("exec", "--", "touch", str(marker))
        finally:
            harness.keyring.unlock()

        assert (run.code, run.out) == (69, "")
        assert not marker.exists()


def test_the_curl_recipe_reaches_the_api(harness: Harness) -> None:
    """README's recipe: printf (a builtin) pipes the header to `curl -H @-`; no argv holds it."""
    harness.seed(age=3600)
    recipe = (
        'printf "Authorization: Bearer %s\\n" "$ACCESS_TOKEN" | curl -fsS -H @- '
        '-H "trakt-api-version: 2" -H "trakt-api-key: $CLIENT_ID" "$URL/users/settings"'
    )

    run = harness.run(
        "exec", "--", "sh", "-c", recipe,
        env=harness.env(CLIENT_ID=CLIENT_ID, URL=harness.emulator.url),
    )  # fmt: skip

    assert run.code == 0, run.err
    assert json.loads(run.out)["user"]["username"] == "alice"
    assert len(harness.emulator.requests("/users/settings")) == 1


API_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    from tvmaniac_refreshd.api import RefreshdError, SessionRejected, get_token, get_token_info
    on_import = sorted(m for m in sys.modules if m.startswith("tvmaniac_refreshd."))
    try:
        token = get_token(min_valid=sys.argv[1] if len(sys.argv) > 1 else None)
        info = get_token_info()
    except RefreshdError as exc:
        print(json.dumps({"error": type(exc).__name__, "exit_code": exc.exit_code,
                          "rejected": isinstance(exc, SessionRejected), "message": str(exc)}))
        sys.exit(0)
    print(json.dumps({
        "digest": hashlib.sha256(token.encode()).hexdigest(),
        "same": info.access_token == token,
        "account": info.account,
        "expires_at": info.expires_at.isoformat(),
        "repr_hides_token": token not in repr(info),
        "on_import": on_import,
        "cli_loaded": "tvmaniac_refreshd.cli.parser" in sys.modules,
    }))
    """
)


class TestPythonApi:
    def script(self, harness: Harness, *args: str) -> dict[str, object]:
        result = subprocess.run(
            [sys.executable, "-c", API_SCRIPT, *args],
            env=harness.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def test_a_plain_script_gets_the_token(self, harness: Harness) -> None:
        grant = harness.seed(age=3600)

        found = self.script(harness)

        assert found["digest"] == digest(grant["access_token"])
        assert found["same"] is True
        assert found["account"] == "default"
        # As `token --json` has it (ISO 8601 UTC), as an aware datetime (issue 25).
        as_json = json.loads(harness.run("token", "--json").out)["expires_at"]
        assert found["expires_at"] == as_json.replace("Z", "+00:00")
        assert found["repr_hides_token"] is True
        # The import alone costs the error tree, not the program.
        assert found["on_import"] == [
            "tvmaniac_refreshd.api",
            "tvmaniac_refreshd.core",
            "tvmaniac_refreshd.core.errors",
        ]
        assert found["cli_loaded"] is False  # the argument parser is never needed

    def test_min_valid_refreshes_under_the_same_rules(self, harness: Harness) -> None:
        grant = harness.seed(age=3600)

        found = self.script(harness, "7d")

        assert (
            found["digest"] == digest(stored_access_token(harness)) != digest(grant["access_token"])
        )
        assert len(harness.emulator.requests("/oauth/token")) == 1

    def test_errors_carry_the_exit_code(self, harness: Harness) -> None:
        reject_the_session(harness)

        found = self.script(harness)

        assert found["error"] == "SessionRejected"
        assert (found["exit_code"], found["rejected"]) == (77, True)
        assert "login" in str(found["message"])
