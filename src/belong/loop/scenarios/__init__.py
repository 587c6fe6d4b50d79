"""Shipped loop scenarios (TOML)."""
