"""The operators' dashboard at ``/dashboard`` (see docs/DASHBOARD.md): server-rendered pages behind the admin key
— overview, live metrics, user explorer (lists, stage trace, why-not, what-if), models (importance, calibration,
metrics, activate and roll back) — with one small script and no network at run time."""

from belong.serve.dashboard.routes import install

__all__ = ["install"]
