"""Integration tests: real processes and services, no mocks."""
