"""The Provider interface as the rest of the program sees it: the factory picks the dialect by
config, and each dialect names itself (an oauth2 account never says Trakt)."""

from __future__ import annotations

import re

import httpx
import pytest

from tvmaniac_refreshd.config.settings import Account, OAuth2Settings, TraktSettings
from tvmaniac_refreshd.providers.factory import make_provider, wording_for
from tvmaniac_refreshd.providers.oauth2 import OAuth2Client
from tvmaniac_refreshd.providers.trakt import TraktClient

TRAKT = Account(name="default", client_id="cid", settings=TraktSettings())
OAUTH2 = Account(
    name="mail",
    client_id="cid",
    settings=OAuth2Settings(
        token_url="https://login.idp.example/oauth2/token",
        authorization_url="https://login.idp.example/oauth2/authorize",
    ),
)


@pytest.fixture
def http() -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(500)))


def test_factory_picks_the_dialect_by_config(http: httpx.Client) -> None:
    assert isinstance(make_provider(http, TRAKT, None), TraktClient)
    assert isinstance(make_provider(http, OAUTH2, None), OAuth2Client)


def test_capabilities_follow_the_config(http: httpx.Client) -> None:
    """Trakt logs in by device code by default and offers the browser (PKCE) on request; oauth2
    without a device endpoint uses the browser, which is what `login` picks without --browser."""
    trakt, oauth2 = make_provider(http, TRAKT, None), make_provider(http, OAUTH2, None)

    assert trakt.has_device_login is True
    assert trakt.browser() is not None
    assert oauth2.has_device_login is False
    assert oauth2.browser() is not None


def test_an_oauth2_account_is_named_by_its_server(http: httpx.Client) -> None:
    wording = wording_for(OAUTH2)
    said = " ".join((wording.name, wording.manage_apps, wording.relogin))

    assert wording.name == "login.idp.example"
    assert make_provider(http, OAUTH2, None).wording == wording
    assert not re.search("trakt", said, re.IGNORECASE)


def test_trakt_is_named_trakt(http: httpx.Client) -> None:
    assert wording_for(TRAKT).name == "Trakt"
    assert make_provider(http, TRAKT, None).wording == wording_for(TRAKT)


def test_httpx_is_imported_without_its_command_line_tool() -> None:
    """httpx loads its CLI (rich, click, pygments) whenever they are installed, as in this
    venv: a sixth of a `refresh --force`. Our import skips it, and leaves nothing blocked."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    probe = (
        "import sys\n"
        "import tvmaniac_refreshd.providers.http\n"
        "print('httpx._main' in sys.modules, 'rich' in sys.modules, "
        "sys.modules.get('httpx._main', 'absent'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )

    assert result.stdout.split() == ["False", "False", "absent"]
