"""Ratings made on the page, kept in a judgments file in the shared format (../shared/data/FORMATS.md: query,
product_id, gain; what `shoprank eval` and core.judgments.load_judgments read).

Each rating is merged into the file as it is: the row of the same query and product gets the new gain, other rows and
columns stay as they were, a new pair is appended. The file is replaced whole (written beside it, flushed, then
renamed over it), so a write that fails leaves the file as it was: no rating saved before is lost. A rating that
could not be written is kept in memory and written with the next one that saves.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from pathlib import Path

from .errors import JudgmentsNotSaved

COLUMNS = ("query", "product_id", "gain")


class JudgmentsFile:
    """One judgments file, read when it changes on disk, written on every rating."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._unsaved: dict[tuple[str, str], int] = {}  # ratings made here whose write failed
        self._read_at: tuple[int, int] | None = None  # (mtime_ns, size) of the file when last read
        self._header: list[str] = list(COLUMNS)
        self._rows: list[dict[str, str]] = []

    def judged(self, query: str) -> dict[str, float]:
        """product_id -> gain of every judgment of `query`, in the file and made here."""
        with self._lock:
            self._refresh()
            gains = {}
            for row in self._rows:
                if row["query"].strip() == query:
                    try:
                        gains[row["product_id"].strip()] = float(row["gain"])
                    except ValueError:
                        continue
            gains.update({product: float(gain) for (rated, product), gain in self._unsaved.items() if rated == query})
            return gains

    def rate(self, query: str, product_id: str, gain: int) -> None:
        """Save one rating; JudgmentsNotSaved (the file untouched, the rating kept for the next write) on failure."""
        with self._lock:
            self._unsaved[(query, product_id)] = gain
            self._refresh()
            rows = [dict(row) for row in self._rows]
            where = {(row["query"].strip(), row["product_id"].strip()): row for row in rows}
            for (rated, product), value in self._unsaved.items():
                if (rated, product) in where:
                    where[(rated, product)]["gain"] = str(value)
                else:
                    rows.append({**dict.fromkeys(self._header, ""), "query": rated, "product_id": product,
                                 "gain": str(value)})
            self._write(rows)
            self._rows = rows
            self._unsaved.clear()

    @property
    def unsaved(self) -> int:
        """How many ratings wait for a write that succeeds."""
        return len(self._unsaved)

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except (FileNotFoundError, NotADirectoryError):  # no file yet (nor, maybe, its folder)
            self._read_at, self._header, self._rows = None, list(COLUMNS), []
            return
        except OSError as error:
            raise JudgmentsNotSaved(f"judgments file {self.path}: cannot read it ({error.strerror})") from None
        if self._read_at == (stat.st_mtime_ns, stat.st_size):
            return
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            raise JudgmentsNotSaved(f"judgments file {self.path}: cannot read it ({error})") from None
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in COLUMNS if name not in header]
        if header and missing:
            raise JudgmentsNotSaved(f"judgments file {self.path} has no column {', '.join(missing)}: it is not a "
                                    f"judgments file (query,product_id,gain); give another --judgments-out")
        reader.fieldnames = header
        self._header = header or list(COLUMNS)
        self._rows = [{name: (row.get(name) or "") for name in self._header} for row in reader]
        self._read_at = (stat.st_mtime_ns, stat.st_size)

    def _write(self, rows: list[dict[str, str]]) -> None:
        partial = self.path.with_name(f".{self.path.name}.workbench-partial")
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=self._header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "w", encoding="utf-8", newline="") as out:
                out.write(buffer.getvalue())
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, self.path)
        except OSError as error:
            try:
                partial.unlink(missing_ok=True)
            except OSError:
                pass
            kept = "the ratings saved before are kept" if self.path.exists() else "nothing was saved yet"
            raise JudgmentsNotSaved(
                f"the rating was not saved: cannot write {self.path} ({error.strerror or error}); {kept}, and the "
                f"{len(self._unsaved)} rating(s) not written are kept here and written with the next rating that "
                f"saves") from None
        stat = self.path.stat()
        self._read_at = (stat.st_mtime_ns, stat.st_size)


class Judgments:
    """The judgments files of the shops, by the configuration's path pattern."""

    def __init__(self, pattern) -> None:
        self._file_of = pattern  # shop -> Path
        self._files: dict[Path, JudgmentsFile] = {}
        self._lock = threading.Lock()

    def of(self, shop: str) -> JudgmentsFile:
        """The shop's judgments file."""
        path = self._file_of(shop)
        with self._lock:
            if path not in self._files:
                self._files[path] = JudgmentsFile(path)
            return self._files[path]
