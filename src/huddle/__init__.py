"""Huddle: a self-hosted backend for team collaboration."""

__version__ = "0.1.0"
