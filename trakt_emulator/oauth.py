"""Trakt's OAuth endpoints (E1-E6) and the protected probe (E7): a request in, a Reply out."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs, urlencode

from trakt_emulator import activate
from trakt_emulator.replies import HTML_TYPE, NO_STORE, Reply, empty_reply, json_reply
from trakt_emulator.state import State
from trakt_emulator.sync import SyncApp

INVALID_CLIENT = {
    "error": "invalid_client",
    "error_description": "Client authentication failed due to unknown client, no client "
    "authentication included, or unsupported authentication method.",
}
SESSION_NOT_FOUND = "session not found"
DOORKEEPER_INVALID_GRANT = (
    "The provided authorization grant is invalid, expired, revoked, does not match the "
    "redirection URI used in the authorization request, or was issued to another client."
)
INVALID_REQUEST = (
    "The request is missing a required parameter, includes an unsupported parameter value, "
    "or is otherwise malformed"
)
INVALID_TOKEN = (
    "WWW-Authenticate",
    'Bearer realm="Trakt", error="invalid_token", error_description="The access token is invalid"',
)

Handler = Callable[[Mapping[str, str], bytes], Reply]


class OAuthApp:
    """The Rails app behind Cloudflare, reduced to what a token daemon touches."""

    def __init__(self, state: State) -> None:
        self._state = state
        self.sync = SyncApp(state, state.clock.time)
        self._routes: dict[str, tuple[str, Handler]] = {
            "/oauth/device/code": ("POST", self._device_code),
            "/oauth/device/token": ("POST", self._device_token),
            "/oauth/token": ("POST", self._token),
            "/oauth/revoke": ("POST", self._revoke),
            "/users/settings": ("GET", self._settings),
        }

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, query: str = ""
    ) -> Reply:
        """Route one request (path without query string; header names in lower case)."""
        page = self._browser_page(method, path, headers, body, query)
        if page is not None:
            return page
        route = self._routes.get(path)
        if route is None and self.sync.handles(path) and (method != "POST" or _is_json(headers)):
            return self.sync.handle(method, path, headers, query)
        if route is None:
            if method == "POST" and not _is_json(headers):
                return empty_reply(412)
            return empty_reply(404)
        allowed, handler = route
        if method != allowed:
            return empty_reply(405, (("Allow", allowed),))
        return handler(headers, body)

    def _browser_page(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, query: str
    ) -> Reply | None:
        """The pages a browser opens (no JSON content type to insist on), else None."""
        if path == "/oauth/authorize":
            if method != "GET":
                return empty_reply(405, (("Allow", "GET"),))
            return self._authorize(query)
        if path == activate.PATH and method in ("GET", "POST"):
            if method == "GET":
                return activate.page(self._state, headers)
            return activate.approve(self._state, headers, body)
        return None

    # E1
    def _device_code(self, headers: Mapping[str, str], body: bytes) -> Reply:
        payload = _json_object(body)
        if payload is None:
            return _invalid_request("body is not a JSON object")
        client_id = payload.get("client_id")
        if not isinstance(client_id, str) or not self._state.known_client(client_id):
            return empty_reply(403, NO_STORE)
        device = self._state.start_device(client_id)
        return json_reply(
            200,
            {
                "device_code": device.device_code,
                "user_code": device.user_code,
                "verification_url": self._state.options.verification_url,
                "expires_in": device.expires_in,
                "interval": device.interval,
            },
            NO_STORE,
        )

    # E2
    def _device_token(self, headers: Mapping[str, str], body: bytes) -> Reply:
        payload = _json_object(body)
        if payload is None:
            return _invalid_request("body is not a JSON object")
        client_id = payload.get("client_id")
        if not isinstance(client_id, str) or not self._state.client_ok(
            client_id, payload.get("client_secret")
        ):
            return self._invalid_client(401)
        code = payload.get("code")
        if not isinstance(code, str):
            return empty_reply(404, NO_STORE)
        outcome, tokens = self._state.poll_device(code, client_id)
        if tokens is not None:
            return json_reply(200, tokens.as_json(), NO_STORE)
        return empty_reply(int(outcome), NO_STORE)

    # E3 and E4
    def _token(self, headers: Mapping[str, str], body: bytes) -> Reply:
        payload = _json_object(body)
        grant_type = payload.get("grant_type") if payload is not None else None
        if payload is None or not isinstance(grant_type, str) or not grant_type:
            return _invalid_request("missing required parameter: grant_type")
        if grant_type not in ("refresh_token", "authorization_code"):
            return json_reply(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "The authorization grant type is not supported by the "
                    "authorization server.",
                },
                NO_STORE,
            )
        client_id = payload.get("client_id")
        pkce = grant_type == "authorization_code" and "code_verifier" in payload
        if not isinstance(client_id, str) or not self._state.client_ok(
            client_id, payload.get("client_secret"), secret_optional=pkce
        ):
            return self._invalid_client(400 if self._state.options.migration_mode_400 else 401)
        if grant_type == "refresh_token":
            return self._refresh_grant(client_id, payload)
        return self._code_grant(client_id, payload)

    def _refresh_grant(self, client_id: str, payload: Mapping[str, object]) -> Reply:
        refresh_token = payload.get("refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            return _invalid_request("missing required parameter: refresh_token")
        tokens = self._state.refresh(client_id, refresh_token)
        if tokens is None:
            return self._invalid_grant(SESSION_NOT_FOUND)
        return json_reply(200, tokens.as_json(), NO_STORE)

    def _code_grant(self, client_id: str, payload: Mapping[str, object]) -> Reply:
        code = payload.get("code")
        if not isinstance(code, str) or not code:
            return _invalid_request("missing required parameter: code")
        result = self._state.redeem_code(
            client_id, code, payload.get("redirect_uri"), payload.get("code_verifier")
        )
        if isinstance(result, str):
            return self._invalid_grant(result)
        return json_reply(200, result.as_json(), NO_STORE)

    # The browser's side of E3: the user signs in and approves; the redirect carries the code.
    def _authorize(self, query: str) -> Reply:
        params = {key: values[0] for key, values in parse_qs(query).items()}
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        # Doorkeeper shows these two on its own page: redirecting to an unchecked URI would
        # hand the code to whoever named it (RFC 6749, section 4.1.2.1).
        if not self._state.known_client(client_id):
            return _error_page("The client is unknown.")
        if redirect_uri not in self._state.options.redirect_uris.split():
            return _error_page("The redirect uri included is not valid.")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method", "plain" if challenge else None)
        error = None
        if params.get("response_type") != "code":
            error = "unsupported_response_type"
        elif challenge is not None and (method != "S256" or len(challenge) != 43):
            error = "invalid_request"  # Trakt supports S256 only
        elif challenge is None and method is not None:
            error = "invalid_request"
        reply: dict[str, str]
        if error is not None:
            reply = {"error": error}
        else:
            user = self._state.options.auto_approve_user
            reply = {"code": self._state.authorize(user, redirect_uri, challenge, client_id)}
        if "state" in params:
            reply["state"] = params["state"]
        location = f"{redirect_uri}?{urlencode(reply)}"
        return Reply(302, b"", HTML_TYPE, (("Location", location), ("Cache-Control", "no-store")))

    # E6
    def _revoke(self, headers: Mapping[str, str], body: bytes) -> Reply:
        payload = _json_object(body)
        if payload is None:
            return _invalid_request("body is not a JSON object")
        client_id = payload.get("client_id")
        if not isinstance(client_id, str) or not self._state.client_ok(
            client_id, payload.get("client_secret")
        ):
            return self._invalid_client(401)
        token = payload.get("token")
        if not isinstance(token, str) or not token:
            return _invalid_request("missing required parameter: token")
        self._state.revoke_token(client_id, token)
        return empty_reply(200, NO_STORE)

    # E7
    def _settings(self, headers: Mapping[str, str], body: bytes) -> Reply:
        if not self._state.known_client(headers.get("trakt-api-key")):
            return empty_reply(403)
        scheme, _, token = headers.get("authorization", "").partition(" ")
        user = self._state.access_user(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            return empty_reply(401, (INVALID_TOKEN,))
        if self._state.is_locked(user):
            return empty_reply(
                423, (("X-Account-Locked", "true"), ("X-Account-Deactivated", "false"))
            )
        return json_reply(
            200,
            {
                "user": {
                    "username": user,
                    "private": False,
                    "name": user.title(),
                    "vip": False,
                    "ids": {"slug": user},
                },
                "account": {"timezone": "UTC", "time_24hr": True},
                "connections": {},
                "limits": {"list": {"count": 2, "item_count": 100}},
            },
        )

    def _invalid_client(self, status: int) -> Reply:
        self._state.count("invalid_client")
        return json_reply(status, INVALID_CLIENT, NO_STORE)

    def _invalid_grant(self, description: str) -> Reply:
        self._state.count("invalid_grant")
        opts = self._state.options
        if opts.legacy_401 or opts.legacy_doorkeeper_text:
            description = DOORKEEPER_INVALID_GRANT
        payload = {"error": "invalid_grant", "error_description": description}
        if not opts.legacy_401:
            return json_reply(400, payload, NO_STORE)
        challenge = (
            f'Bearer realm="Doorkeeper", error="invalid_grant", error_description="{description}"'
        )
        return json_reply(401, payload, (*NO_STORE, ("WWW-Authenticate", challenge)))


def _error_page(message: str) -> Reply:
    page = "<!DOCTYPE html><title>Trakt</title><h1>An error has occurred</h1>"
    page += f"<p>{html.escape(message)}"
    return Reply(400, page.encode("utf-8"), HTML_TYPE)


def _invalid_request(detail: str) -> Reply:
    return json_reply(
        400,
        {"error": "invalid_request", "error_description": f"{INVALID_REQUEST}: {detail}"},
        NO_STORE,
    )


def _json_object(body: bytes) -> dict[str, object] | None:
    try:
        payload: object = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(payload, dict):
        return None
    return {str(key): value for key, value in payload.items()}


def _is_json(headers: Mapping[str, str]) -> bool:
    return headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"
