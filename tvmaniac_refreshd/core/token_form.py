"""What a token looks like, without ``re`` or ``dataclasses``: the quick `token` path checks it
too (quick_token.py), and is measured in milliseconds."""

from __future__ import annotations

# Real tokens are short; a cap keeps a runaway response out of the keyring.
MAX_TOKEN_LENGTH = 4096


def is_token_text(value: str) -> bool:
    """Return whether ``value`` has a token's form: 1 to MAX_TOKEN_LENGTH visible ASCII
    characters (``\\x21``-``\\x7e``), as RFC 6750's b64token allows."""
    return (
        0 < len(value) <= MAX_TOKEN_LENGTH
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )
