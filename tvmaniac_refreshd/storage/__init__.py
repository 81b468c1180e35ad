"""Where secrets and state live: the keyring store (with the direct Secret Service client), the
client-secret lookup, non-secret state files, paths and locks.

May import ``core`` and ``config``; never ``providers``, ``daemon``, ``service``, ``runtime``
or ``cli``.
"""
