"""The one place that picks a provider dialect, by the variant of the account's settings.

The dialects (and with them httpx) are imported on first use, so a command that never talks
to the provider never loads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tvmaniac_refreshd.config.settings import Account, OAuth2Settings

if TYPE_CHECKING:
    import httpx

    from tvmaniac_refreshd.providers.base import Provider, Wording


def make_provider(http: httpx.Client, account: Account, client_secret: str | None) -> Provider:
    """Return ``account``'s provider over the shared ``http`` client."""
    if isinstance(account.settings, OAuth2Settings):
        from tvmaniac_refreshd.providers.oauth2 import OAuth2Client  # noqa: PLC0415

        return OAuth2Client(http, account, client_secret)
    from tvmaniac_refreshd.providers.trakt import TraktClient  # noqa: PLC0415

    return TraktClient(http, account, client_secret)


def wording_for(account: Account) -> Wording:
    """Return how ``account``'s provider is named to the user, without building a client."""
    if isinstance(account.settings, OAuth2Settings):
        from tvmaniac_refreshd.providers.oauth2 import wording  # noqa: PLC0415

        return wording(account)
    from tvmaniac_refreshd.providers.trakt import WORDING  # noqa: PLC0415

    return WORDING
