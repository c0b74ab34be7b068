"""Knowledge-base ingestion: jsonl / tsv / one-fact-per-line files -> passages.

Streams its inputs line by line (a 20 GB dump is never held in memory), splits long documents into
fixed word windows with a stride (as DPR does for Wikipedia; the document title travels with each
window and is prepended when indexed), drops exact duplicates and gives every passage a stable id:
  - a document with an id keeps it when it fits one window, else its windows are `ID#0`, `ID#1`, ...
  - a document without one (a line of `openbook.txt`) gets `STEM:HASH`, a hash of its normalised
    text, so the id survives reordering or editing the rest of the file.
Memory grows by ~100 bytes per document (hashes of ids and contents, for the duplicate checks).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import unicodedata
from typing import Iterator, Sequence

from kard_jax.data import jsonl
from kard_jax.data.errors import InputError
from kard_jax.retrieval.passages import Passage

FORMATS = ("auto", "jsonl", "tsv", "lines")
_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".tsv": "tsv", ".txt": "lines"}


@dataclasses.dataclass(frozen=True)
class IngestConfig:
  window: int | None = 100  # words per passage; None keeps documents whole
  stride: int | None = None  # words between window starts; None = window (no overlap)
  dedupe: bool = True  # drop passages whose normalised title+text was seen before

  def __post_init__(self):
    if self.window is not None and self.window < 1:
      raise ValueError(f"window must be positive, got {self.window}")
    if self.stride is not None and (self.stride < 1 or (self.window and self.stride > self.window)):
      raise ValueError(f"stride must be in [1, window={self.window}], got {self.stride}")


@dataclasses.dataclass
class IngestStats:
  documents: int = 0
  passages: int = 0
  split_documents: int = 0  # documents longer than one window
  duplicates: int = 0  # passages (or repeated documents) dropped as exact duplicates
  empty: int = 0  # documents without text, skipped

  def to_json(self) -> dict[str, int]:
    return dataclasses.asdict(self)


def normalize_text(text: str) -> str:
  """NFKC, case-folded, whitespace-collapsed: the key for duplicates and gold-evidence matches."""
  return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _hash64(*parts: str) -> int:
  h = hashlib.blake2b(digest_size=8)
  for p in parts:
    h.update(p.encode("utf-8"))
    h.update(b"\x00")
  return int.from_bytes(h.digest(), "little")


def split_words(text: str, window: int | None, stride: int | None) -> list[str]:
  """Fixed word windows starting every `stride` words; the last one reaches the end."""
  words = text.split()
  if window is None or len(words) <= window:
    return [text.strip()]
  stride = stride or window
  out, start = [], 0
  while True:
    out.append(" ".join(words[start:start + window]))
    if start + window >= len(words):
      return out
    start += stride


def detect_format(path: str, fmt: str = "auto") -> str:
  if fmt not in FORMATS:
    raise ValueError(f"unknown knowledge-base format {fmt!r}; choose from {FORMATS}")
  if fmt != "auto":
    return fmt
  ext = os.path.splitext(path)[1].lower()
  if ext not in _EXTENSIONS:
    raise InputError(path, f"cannot tell the format from the extension {ext!r}; pass a format "
                     "(jsonl, tsv or lines)")
  return _EXTENSIONS[ext]


# A raw document: (id or None, title, text, line number).
_Doc = tuple[str | None, str, str, int]


def _lines(path: str, progress) -> Iterator[tuple[int, str]]:
  if not os.path.isfile(path):
    raise InputError(path, "file not found")
  with open(path, "rb") as f:
    for lineno, raw in enumerate(f, start=1):
      if progress is not None:
        progress.update(len(raw))
      try:
        yield lineno, raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise InputError(path, f"not valid UTF-8 ({e.reason} at byte {e.start})", lineno) from None


def _read_jsonl(path: str, progress) -> Iterator[_Doc]:
  for lineno, line in _lines(path, progress):
    if not line.strip():
      continue
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      raise InputError(path, f"invalid JSON ({e.msg} at column {e.colno})", lineno) from None
    if not isinstance(obj, dict):
      raise InputError(path, f"expected a JSON object, got {type(obj).__name__}", lineno)
    text = obj.get("text", obj.get("contents"))
    if not isinstance(text, str):
      raise InputError(path, "each object needs a string 'text' (or 'contents')", lineno)
    title = obj.get("title") or ""
    if not isinstance(title, str):
      raise InputError(path, "'title' must be a string", lineno)
    doc_id = obj.get("id", obj.get("_id"))
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int, type(None))):
      raise InputError(path, f"'id' must be a string or integer, got {type(doc_id).__name__}",
                       lineno)
    yield (None if doc_id is None or doc_id == "" else str(doc_id)), title, text, lineno


def _read_tsv(path: str, progress) -> Iterator[_Doc]:
  """Columns id, text[, title] (DPR's psgs_w100.tsv order), or named by a header row."""
  columns = None
  for lineno, line in _lines(path, progress):
    if not line.strip():
      continue
    try:
      row = next(csv.reader([line.rstrip("\r\n")], delimiter="\t"))
    except csv.Error as e:
      raise InputError(path, f"malformed TSV ({e})", lineno) from None
    if columns is None:
      names = [c.strip().lower() for c in row]
      if "text" in names:
        columns = {n: names.index(n) for n in ("id", "text", "title") if n in names}
        continue
      columns = {"id": 0, "text": 1, "title": 2}
    needed = max(columns["text"], columns.get("id", 0)) + 1
    if len(row) < needed:
      raise InputError(path, f"expected at least {needed} tab-separated columns, got {len(row)}",
                       lineno)
    title = row[columns["title"]] if "title" in columns and len(row) > columns["title"] else ""
    doc_id = row[columns["id"]].strip() if "id" in columns else ""
    yield (doc_id or None), title, row[columns["text"]], lineno


def _read_lines(path: str, progress) -> Iterator[_Doc]:
  """One fact per line; surrounding double quotes (OpenBookQA's openbook.txt) are removed."""
  for lineno, line in _lines(path, progress):
    text = line.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
      text = text[1:-1].strip()
    if text:
      yield None, "", text, lineno


_READERS = {"jsonl": _read_jsonl, "tsv": _read_tsv, "lines": _read_lines}


def iter_kb(paths: str | Sequence[str], fmt: str = "auto", config: IngestConfig = IngestConfig(),
            stats: IngestStats | None = None, show_progress: bool = True) -> Iterator[Passage]:
  """Streams passages from knowledge-base files (see the module docstring for the rules)."""
  from tqdm.auto import tqdm  # imported late: the CLI's --help must stay fast

  paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
  paths = [os.fspath(p) for p in paths]
  stats = stats if stats is not None else IngestStats()
  formats = [detect_format(p, fmt) for p in paths]
  total = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
  seen_ids: dict[int, int] = {}  # id hash -> content hash
  seen_content: set[int] = set()
  with tqdm(total=total, unit="B", unit_scale=True, desc="ingest", disable=not show_progress,
            mininterval=1.0) as progress:
    for path, f in zip(paths, formats):
      stem = os.path.splitext(os.path.basename(path))[0]
      for doc_id, title, text, lineno in _READERS[f](path, progress):
        if not text.strip():
          stats.empty += 1
          continue
        title = title.strip()
        key = _hash64(normalize_text(title), normalize_text(text))
        if doc_id is None:
          doc_id = f"{stem}:{key:016x}"
        if "\n" in doc_id or "\r" in doc_id:
          raise InputError(path, f"id {doc_id!r} contains a line break", lineno)
        id_key = _hash64(doc_id)
        if id_key in seen_ids:
          if seen_ids[id_key] != key:
            raise InputError(path, f"duplicate id {doc_id!r} with a different text than its "
                             "first occurrence", lineno)
          stats.duplicates += 1
          continue
        seen_ids[id_key] = key
        stats.documents += 1
        windows = split_words(text, config.window, config.stride)
        if len(windows) > 1:
          stats.split_documents += 1
        for k, chunk in enumerate(windows):
          if config.dedupe:
            ckey = key if len(windows) == 1 else _hash64(normalize_text(title),
                                                         normalize_text(chunk))
            if ckey in seen_content:
              stats.duplicates += 1
              continue
            seen_content.add(ckey)
          pid = doc_id
          if len(windows) > 1:
            pid = f"{doc_id}#{k}"
            if seen_ids.setdefault(_hash64(pid), -1) != -1:
              raise InputError(path, f"window id {pid!r} collides with a document id", lineno)
          stats.passages += 1
          yield Passage(pid, title, chunk)


def ingest(paths: str | Sequence[str], out_path, fmt: str = "auto",
           config: IngestConfig = IngestConfig(), show_progress: bool = True) -> IngestStats:
  """Writes kb/passages.jsonl atomically (a crash leaves no half file); returns the counts."""
  stats = IngestStats()
  jsonl.write_jsonl(out_path, (p.to_json() for p in iter_kb(paths, fmt, config, stats,
                                                            show_progress)))
  return stats

