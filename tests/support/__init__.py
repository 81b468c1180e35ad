"""Shared test harnesses (real Secret Service, helpers) for the tvmaniac-refreshd suite."""
