"""Errors that reach users. Each names the field and the problem; CLI maps them to exit code 2, HTTP to 4xx."""

from __future__ import annotations


class BelongError(Exception):
    """Base class of every error belong raises on purpose."""


class ValidationError(BelongError, ValueError):
    """Input rejected: ``field`` names what was wrong, ``reason`` says why."""

    def __init__(self, field: str, reason: str, *, line: int | None = None) -> None:
        self.field = field
        self.reason = reason
        self.line = line
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{field}: {reason}")

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"field": self.field, "reason": self.reason}
        if self.line is not None:
            out["line"] = self.line
        return out


class DatasetError(BelongError):
    """A dataset file is missing, malformed or does not match the counts its SOURCE.md states."""


class StoreError(BelongError):
    """A store URL cannot be opened or the backend failed."""


class UnknownIdError(BelongError, KeyError):
    """A user/community/item id the model or pipeline has never seen."""

    def __init__(self, kind: str, ident: object) -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(f"unknown {kind} id: {ident!r}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return f"unknown {self.kind} id: {self.ident!r}"
