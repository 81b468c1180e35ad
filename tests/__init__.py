"""Test suite for tvmaniac-refreshd."""
