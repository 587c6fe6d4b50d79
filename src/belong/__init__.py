"""belong: recommendation engine for community platforms."""

__version__ = "0.1.0"
