"""Dataset folders and their ``SOURCE.md``: locating files and checking the counts SOURCE.md states.

Every folder under ``BELONG_DATA_DIR`` carries a ``SOURCE.md`` with markdown tables: a *Files* table
(``file | bytes | lines | sha256``) and a *Verified statistics* table (``quantity | official | measured``). Loaders
check each file's line count against the Files table and the dataset's row counts against the statistics, so a
truncated, replaced or wrong file fails with a :class:`DatasetError` instead of silently skewing an evaluation.
Folders without a SOURCE.md (user-supplied data) are loaded without count checks.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from belong.errors import DatasetError
from belong.settings import get_settings

SOURCE_NAME = "SOURCE.md"
_NUMBER = re.compile(r"\d[\d,]*")


def data_root(data_dir: Path | None = None) -> Path:
    """The public-datasets folder: ``data_dir`` if given, else the ``BELONG_DATA_DIR`` setting."""
    if data_dir is not None:
        return Path(data_dir)
    return get_settings().data_dir


def dataset_dir(folder: str, data_dir: Path | None = None) -> Path:
    """The folder of a named public dataset, or a DatasetError that says where it was looked for."""
    root = data_root(data_dir)
    path = root / folder
    if not path.is_dir():
        raise DatasetError(
            f"dataset folder {folder!r} not found in {root.resolve()} (set BELONG_DATA_DIR to the folder that "
            f"holds the public datasets)"
        )
    return path


def resolve_user_path(raw: str, data_dir: Path | None = None, *, want_dir: bool) -> Path:
    """A user-given DIR or FILE: relative to the current directory first, then to the data folder."""
    if not raw:
        raise DatasetError("dataset spec: a path is required after the ':'")
    candidates = [Path(raw)]
    if not Path(raw).is_absolute():
        candidates.append(data_root(data_dir) / raw)
    for path in candidates:
        if (path.is_dir() if want_dir else path.is_file()):
            return path
    kind = "folder" if want_dir else "file"
    tried = ", ".join(str(p) for p in candidates)
    raise DatasetError(f"{kind} {raw!r} not found (looked at: {tried})")


@dataclass(frozen=True)
class SourceTables:
    """All markdown tables of one SOURCE.md: each a header row and its data rows (cells stripped)."""

    folder: Path
    tables: list[tuple[list[str], list[list[str]]]]

    def _rows(self) -> list[tuple[list[str], list[str]]]:
        return [(header, row) for header, rows in self.tables for row in rows]

    def stated_lines(self, relpath: str) -> int | None:
        """The ``lines`` column of the Files table for ``relpath`` (a path relative to the folder)."""
        for header, row in self._rows():
            keys = [h.lower() for h in header]
            if "lines" in keys and _plain(row[0]) == relpath:
                return _first_number(row[keys.index("lines")])
        return None

    def stated(self, label: str, column: int = 1) -> int | None:
        """The first number in ``column`` of the row whose first cell is ``label`` (or ``label (…)``)."""
        want = label.lower()
        for _, row in self._rows():
            first = _plain(row[0]).lower()
            if (first == want or first.startswith(want + " (")) and len(row) > column:
                return _first_number(row[column])
        return None


def _plain(cell: str) -> str:
    return cell.replace("`", "").replace("*", "").strip()


def _first_number(cell: str) -> int | None:
    m = _NUMBER.search(cell)
    return int(m.group().replace(",", "")) if m else None


def read_source(folder: Path) -> SourceTables | None:
    """Parse ``folder/SOURCE.md`` (None when the folder has none)."""
    path = folder / SOURCE_NAME
    if not path.is_file():
        return None
    tables: list[tuple[list[str], list[list[str]]]] = []
    current: list[list[str]] | None = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        s = line.strip()
        if not s.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in s.strip("|").split("|")]
        if all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
            continue
        if current is None:
            current = []
            tables.append((cells, current))
        else:
            current.append(cells)
    return SourceTables(folder, tables)


def find_source(path: Path, levels: int = 2) -> SourceTables | None:
    """The SOURCE.md of the folder holding ``path`` or of one of its parents (``levels`` folders up)."""
    folder = path if path.is_dir() else path.parent
    for _ in range(levels):
        src = read_source(folder)
        if src is not None:
            return src
        folder = folder.parent
    return None


def count_lines(path: Path) -> int:
    """Newline count, as ``wc -l`` does."""
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def check_file(path: Path, source: SourceTables | None, dataset: str) -> None:
    """The file exists and, when SOURCE.md lists it, has the stated number of lines."""
    if not path.is_file():
        raise DatasetError(f"{dataset}: missing file {path}")
    if source is None:
        return
    rel = path.resolve().relative_to(source.folder.resolve()).as_posix()
    stated = source.stated_lines(rel)
    if stated is not None:
        actual = count_lines(path)
        if actual != stated:
            raise DatasetError(
                f"{dataset}: {rel} has {actual:,} lines but {source.folder / SOURCE_NAME} states {stated:,} "
                f"(truncated or replaced file?)"
            )


def expect_count(dataset: str, what: str, actual: int, stated: int | None) -> None:
    """Raise when SOURCE.md states a count and the data has another."""
    if stated is not None and actual != stated:
        raise DatasetError(f"{dataset}: found {actual:,} {what}, SOURCE.md states {stated:,}")


def _check_field_counts(path: Path, dataset: str, sep: str, n_fields: int, header: bool) -> None:
    """Every non-blank line has ``n_fields`` fields (vectorised over the raw bytes; ``sep`` is one ASCII byte)."""
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    if raw.size == 0:
        raise DatasetError(f"{dataset}: {path.name} is empty")
    ends = np.flatnonzero(raw == ord("\n"))
    if ends.size == 0 or ends[-1] != raw.size - 1:
        ends = np.append(ends, raw.size)  # last line without a newline
    seps = np.concatenate([[0], np.cumsum(raw == ord(sep))])
    starts = np.concatenate([[0], ends[:-1] + 1])
    fields = seps[ends] - seps[starts] + 1
    blank = (ends - starts) - (raw[np.maximum(ends - 1, 0)] == ord("\r")) <= 0
    bad = (fields != n_fields) & ~blank
    if header:
        bad[0] = False
    if bad.any():
        i = int(bad.argmax())
        raise DatasetError(
            f"{dataset}: {path.name} line {i + 1}: expected {n_fields} fields separated by {sep!r}, got {fields[i]}"
        )


def read_delimited(
    path: Path,
    dataset: str,
    *,
    sep: str,
    names: list[str],
    header: bool,
    encoding: str = "utf-8",
    int_columns: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Read a delimited text file as strings; ``int_columns`` are converted to int64.

    Malformed input (wrong field count, a non-integer where one is expected) raises :class:`DatasetError`
    naming the file and the line.
    """
    if not path.is_file():
        raise DatasetError(f"{dataset}: missing file {path}")
    _check_field_counts(path, dataset, sep, len(names), header)
    try:
        df = pd.read_csv(
            path, sep=sep, header=None, names=names, skiprows=1 if header else 0, dtype=str,
            encoding=encoding, quoting=csv.QUOTE_NONE, keep_default_na=False, na_filter=False, engine="c",
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{dataset}: cannot parse {path.name}: {str(exc).strip()}") from None
    first_line = 2 if header else 1
    for col in int_columns:
        nums = pd.to_numeric(df[col].str.strip(), errors="coerce")
        bad = nums.isna().to_numpy() | (nums.to_numpy(dtype=float) % 1 != 0)
        if bad.any():
            i = int(bad.argmax())
            raise DatasetError(
                f"{dataset}: {path.name} line {i + first_line}: column {col!r} must be an integer, "
                f"got {df[col].iloc[i]!r}"
            )
        df[col] = nums.astype("int64")
    return df
