"""Unit tests: pure code and in-process fakes; no network, no keyring."""
