"""The closed loop (docs/LOOP.md): simulated people respond to what belong serves, belong learns from it, and
every estimate is held against the truth that only the simulation knows.

``latents`` (the simulator's hidden interests), ``response`` (the fixed response model), ``truth`` (expected
outcomes without sampling), ``scenario`` (TOML scenarios), ``runner`` (the day loop), ``report`` (HTML).
"""
