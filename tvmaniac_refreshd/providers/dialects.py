"""The words real providers use where the RFCs name a field or an outcome differently.

Every provider answer is read through these tables, so Trakt, Google, Microsoft and a server
that follows the RFCs to the letter all end in the same outcomes. Each entry cites the
provider's own documentation, since that, not the RFC, is what its server sends.
"""

from __future__ import annotations

# Device authorization response (RFC 8628 §3.2): the RFC's name, then the names providers use.
# Google: "OAuth 2.0 for TV and Limited-Input Device Applications", step 2, "Handle the
# authorization server response": verification_url (and no _complete variant is documented).
# Trakt: "Device authentication" in its API docs: verification_url as well.
DEVICE_FIELDS: dict[str, tuple[str, ...]] = {
    "verification_uri": ("verification_uri", "verification_url"),
    "verification_uri_complete": ("verification_uri_complete", "verification_url_complete"),
}

# Error words (RFC 6749 §5.2, RFC 8628 §3.5) spelled the provider's way, with the RFC's word.
ERROR_ALIASES = {
    # Microsoft identity platform, "OAuth 2.0 device authorization grant", "Expected errors":
    # "authorization_declined: The end user denied the authorization request" (RFC 8628:
    # access_denied); "bad_verification_code: The device_code sent to the /token endpoint
    # wasn't recognized" (RFC 8628 §3.5 calls an unusable device_code invalid_grant).
    "authorization_declined": "access_denied",
    "bad_verification_code": "invalid_grant",
    # Google, "Using OAuth 2.0 to Access Google APIs", authorization errors: "deleted_client:
    # The OAuth client being used to make the request has been deleted".
    "deleted_client": "invalid_client",
    # GitHub, "Authorizing OAuth apps" ("Error codes for the device flow", "Troubleshooting
    # OAuth app access token request errors"), sent with HTTP 200: incorrect_device_code "The
    # device_code provided is not valid"; bad_refresh_token; incorrect_client_credentials.
    "incorrect_device_code": "invalid_grant",
    "bad_refresh_token": "invalid_grant",
    "incorrect_client_credentials": "invalid_client",
    # Outcomes that, like invalid_grant, mean "log in again" (see LOGIN_NEEDED).
    "consent_required": "interaction_required",
    "login_required": "interaction_required",
}

# Microsoft sends "error_codes": [AADSTS number] beside the word; where the number is more
# precise than the word, it decides. learn.microsoft.com, "Microsoft Entra authentication and
# authorization error codes" (reference-error-codes).
AADSTS_OUTCOMES = {
    70016: "authorization_pending",  # "OAuth 2.0 device flow error. Authorization is pending."
    70019: "expired_token",  # "Verification code expired. Have the user retry the sign-in."
    70008: "invalid_grant",  # the refresh token or code has expired due to inactivity
    700082: "invalid_grant",  # the refresh token has expired due to inactivity
    700084: "invalid_grant",  # a single-page app's refresh token reached its 24 h limit
    50173: "invalid_grant",  # the grant was revoked (password changed or reset)
    54005: "invalid_grant",  # "OAuth2 Authorization code was already redeemed"
    50076: "interaction_required",  # multi-factor authentication now required
    50079: "interaction_required",  # the user must enrol in multi-factor authentication
    50158: "interaction_required",  # an external security challenge was not satisfied
    53003: "interaction_required",  # blocked by Conditional Access
    65001: "interaction_required",  # the user or an admin has not consented to the app
    7000215: "invalid_client",  # an invalid client secret is provided
    7000222: "invalid_client",  # the client secret has expired
    700016: "invalid_client",  # the application was not found in the directory
}

# Outcomes of a refresh that mean "log in again", beside RFC 6749's invalid_grant: Microsoft's
# token endpoint errors (v2 "OAuth 2.0 authorization code flow", "Error codes for token
# endpoint errors"): interaction_required, consent_required; OpenID Connect Core §3.1.2.6:
# login_required.
LOGIN_NEEDED = frozenset({"invalid_grant", "invalid_token", "interaction_required"})
# RFC 6749 §4.1.2.1 names it for the redirect; Microsoft sends it from the token endpoint too
# ("The server is temporarily too busy to handle the request. Retry the request.").
TEMPORARY = frozenset({"temporarily_unavailable"})


def canonical_error(code: str | None, body: object) -> str | None:
    """Return the RFC's word for the error the provider answered with ``code``."""
    if isinstance(body, dict):
        numbers = body.get("error_codes")
        if isinstance(numbers, list):
            for number in numbers:
                if isinstance(number, int) and number in AADSTS_OUTCOMES:
                    return AADSTS_OUTCOMES[number]
    if code is None:
        return None
    return ERROR_ALIASES.get(code, code)


def device_field(body: dict[str, object], name: str) -> object:
    """Return the device answer's ``name`` field under whichever spelling the provider uses."""
    for spelling in DEVICE_FIELDS.get(name, (name,)):
        if spelling in body:
            return body[spelling]
    return None
