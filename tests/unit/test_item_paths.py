"""ItemPaths remembers only what a listing made unambiguous."""

from __future__ import annotations

from tvmaniac_refreshd.storage.item_paths import ItemPaths


def test_prime_remembers_each_single_item_and_skips_ambiguous_ones() -> None:
    paths = ItemPaths()
    paths.remember("svc", "b", "/old/b")

    paths.prime("svc", [("/c/1", "a"), ("/c/2", "b"), ("/c/3", "b"), ("/c/4", None)])

    assert paths.primed("svc")
    assert not paths.primed("other")
    assert paths.get("svc", "a") == "/c/1"
    assert paths.get("svc", "b") is None  # two items: which is first is the keyring's choice
    assert len(paths) == 1


def test_forget_and_remember() -> None:
    paths = ItemPaths()
    paths.remember("svc", "a", "/c/1")
    paths.forget("svc", "a")
    paths.forget("svc", "never")

    assert paths.get("svc", "a") is None
