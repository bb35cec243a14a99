"""Glimpse: an OpenStack Image service (Images API v2)."""

__version__ = "0.1.0"
