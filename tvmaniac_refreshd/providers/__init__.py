"""The OAuth providers: ``base`` (the one ``Provider`` interface and its answers), ``factory``
(the only code that picks a dialect, by the variant of the account's settings), ``http`` (the
only httpx user), the ``trakt`` and generic ``oauth2`` dialects, and the login flows (device
code, browser with PKCE).

May import ``core`` and ``config``; never ``storage``, ``daemon``, ``service``, ``runtime`` or
``cli``.
"""
