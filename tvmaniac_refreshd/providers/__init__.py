"""The OAuth providers: ``http`` (the only httpx user), one ``Provider`` interface, the Trakt and
generic OAuth2 dialects, and the login flows (device code, browser with PKCE).

May import ``core`` and ``config``; never ``storage``, ``daemon``, ``service`` or ``cli``.
"""
