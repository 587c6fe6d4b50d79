"""Recommendation models behind one interface (see :mod:`belong.models.base`)."""
