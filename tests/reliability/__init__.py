"""Reliability experiments: the real command killed at random moments, and racing itself."""
