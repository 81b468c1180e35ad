"""A 200 from a token endpoint: the only copy of a grant, read so that it is never thrown away.

Once the server answered 200 to a device poll, a code exchange or a refresh, the code (or, with
rotation, the old refresh token) is spent. So the answer is kept whenever it holds an access
token and a refresh token, whatever else is wrong with it; otherwise the user is told that the
answer could not be used and what that costs, and nothing asks the server again with the spent
code. Every problem names the field and what was received.
"""

from __future__ import annotations

from enum import Enum

from tvmaniac_refreshd.core.errors import (
    LoginFailed,
    ProviderIncompatible,
    TransientError,
    WrongEndpoint,
)
from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.core.tokens import ResponseInvalid, TokenSet, salvage_token_response
from tvmaniac_refreshd.providers.http import Response

# Fields of which a token response (RFC 6749 §5.1) has at least one; an answer with none of
# them is from another endpoint.
TOKEN_FIELDS = ("access_token", "refresh_token", "token_type", "expires_in")


class Spent(Enum):
    """What the answered request used up."""

    LOGIN_CODE = "login"  # a device code or an authorization code: a new login is needed
    REFRESH_TOKEN = "refresh"  # a refresh token, which a rotating server no longer accepts


def read_tokens(
    response: Response,
    *,
    what: str,
    now: float,
    spent: Spent,
    endpoint_key: str,
    generic: bool = True,
    previous_refresh: str | None = None,
    default_lifetime: int = 3600,
    hint: str = "",
    account: str | None = None,
) -> TokenSet:
    """Return the tokens of a 200 ``response``, or raise saying why they cannot be used.

    ``endpoint_key``: the config key of the URL asked, named when the answer is not a token
    response at all. ``hint``: a clause that says how to get a usable answer next time.

    Raises:
        LoginFailed: a login's answer holds no usable token pair (1); never asked again.
        ProviderIncompatible: a refresh's answer holds no usable token pair (1).
        WrongEndpoint: the answer is JSON but no token response: the URL is wrong (78).
        TransientError: a refresh answered with an HTML page (a captive portal, 75).
    """
    body = response.json()
    if body is None and spent is Spent.REFRESH_TOKEN and response.is_html:
        # A portal or proxy page never reached the server: the refresh token is unspent.
        raise TransientError(f"{what}: the provider answered with an HTML page (HTTP 200)")
    if isinstance(body, dict) and not any(key in body for key in TOKEN_FIELDS):
        raise WrongEndpoint(
            f"{what}: the answer (HTTP 200) has none of the fields of a token response; "
            f"does {endpoint_key} in the config point at the provider's token endpoint?"
        )
    try:
        tokens, problems = salvage_token_response(
            body if body is not None else "",
            now=now,
            generic=generic,
            previous_refresh=previous_refresh,
            default_lifetime=default_lifetime,
        )
    except ResponseInvalid as exc:
        reason = "the body is not JSON" if body is None else str(exc)
        if spent is Spent.LOGIN_CODE:
            raise LoginFailed(
                f"{what}: the provider answered with success, but its answer could not be used "
                f"({reason}){hint}. Nothing was stored; the code is spent, so a new login is "
                "needed: run `login` again"
            ) from None
        raise ProviderIncompatible(
            f"{what}: the provider answered with success, but its answer could not be used "
            f"({reason}){hint}. The stored tokens were kept; if the provider rotated the "
            "refresh token with this answer they no longer work, and a new login is needed"
        ) from None
    if problems:
        # Kept, and said: a provider that sends this deserves a report, not a lost grant.
        found = "; ".join(problems)
        get_logger(account=account).warning(
            "token.response_irregular",
            problems=found,
            kept=True,
            say=f"the provider's token answer was irregular ({found}); the new tokens were kept",
        )
    return tokens
