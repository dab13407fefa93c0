"""Readers for published listening tests: each turns a corpus folder into :class:`Rating` records.

One reader per published layout (``READERS``), all returning the same record, so the ``import`` recipe
(:mod:`data_prep.rated`) writes every corpus into one shard format. A reader only parses the
corpus' own files: it never opens audio, so a whole corpus is listed in seconds and a missing or broken
audio file is reported by the shard builder (``manifest["skipped"]``), not here. Rows a reader cannot use
(no score, unparsable number) are returned as :class:`~data_prep.shards.Skip` entries.

Layouts (``root`` is the folder you unpacked; paths inside the corpus files are resolved against it):

- ``nisqa``: ``NISQA_corpus_file.csv`` with the published columns ``db, con, file, con_description,
  filename_deg, filename_ref, source, lang, votes, mos, noi, col, dis, loud, noi_std, col_std, dis_std,
  loud_std, mos_std, filepath_deg, filepath_ref, ...``; audio under the sub-corpus folders
  (``NISQA_TRAIN_SIM/deg/...``, ``NISQA_VAL_LIVE/deg/...``, ``NISQA_TEST_FOR/deg/...``). Split from ``db``
  (TRAIN/VAL/TEST), system ``{db}/c{con}``, per-axis ``noi col dis loud``; MOS 1..5.
- ``bvcc``: ``sets/{train,val,test}_mos_list.txt`` with ``wavname,mos`` rows, audio in ``wav/``
  (``root`` may be ``main/DATA`` or a parent of it). System = the ``sysXXXX`` prefix; MOS 1..5.
- ``aes``: AudioMOS 2025 track 2 / AES-natural: ``*.jsonl`` rows ``{"data_path": ..., "Production_Quality":
  [10 ratings] | mean, "Production_Complexity": ..., "Content_Enjoyment": ..., "Content_Usefulness": ...}``
  or the challenge's ``*_list.csv`` (``sample_id,data_path,<four axes>``). ``data_path`` may start with the
  published placeholder ``/your_path/`` or be a bare id; it is resolved under ``root``. Scale 1..10;
  there is no overall rating, so ``mos`` is null and the four axes are labels (``pq pc ce cu``).
- ``odaq``: ODAQ (``ODAQ/ODAQ_listening_test/``): one MUSHRA XML result per listener (``<trial trialName>``
  with ``<testFile fileName score>``) and one folder per trial holding ``reference.wav`` and the rated
  files. Scores (0..100) are averaged per (trial, file). Without XML files ``ODAQ_results.csv`` (one row
  per listener and stimulus: ``subject, method, item, process, condition, score``) is read and the
  stimulus is looked up in folder ``{method}_{item}`` by ``process``/``condition`` name.
- ``tcd_voip``: TCD-VoIP: one folder per degradation type (``Test Set/chop/``, ``echo/``, ...) with the
  degraded ``C_*.wav``, references ``ref/R_*.wav`` and a CSV ``Filename,ConditionID,MOS``. MOS 1..5.
- ``csv``: a generic CSV ``file,score[,reference][,system][,split]`` (header optional when the columns are
  in that order); paths relative to the CSV's folder. Rows without a split get ``split == ""`` and the
  ``import`` recipe hashes them into train/val (``--val-fraction``).

Raw per-listener ratings (``long``, ``lists`` and SEBASS-DB's ``sebass`` layouts) are read by
:mod:`data_prep.ratings`, which screens the listeners and aggregates them into these same records.

Every record carries ``corpus``, ``split``, ``mos`` (or null), ``scores`` (per axis), ``system``,
``reference`` (a path relative to ``root`` when the corpus names one) and the rating scale.
"""

from __future__ import annotations

import csv
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

from aqa.tables import COLUMN_ALIASES, norm_column, sniff_delimiter
from data_prep.shards import AUDIO_SUFFIXES, Skip, safe_id

__all__ = ["Rating", "READERS", "read_corpus", "detect_layout", "AES_AXES", "NISQA_AXES", "GENERIC_LAYOUT"]

NISQA_AXES = ("noi", "col", "dis", "loud")
# published AES field name -> short label key
AES_AXES = {
    "Production_Quality": "pq",
    "Production_Complexity": "pc",
    "Content_Enjoyment": "ce",
    "Content_Usefulness": "cu",
}


@dataclass(frozen=True)
class Rating:
    """One rated stimulus of a listening test.

    Args:
        key: unique sample key (``[A-Za-z0-9_-]``, corpus prefix included).
        path: the rated audio file.
        corpus: corpus name, e.g. ``"nisqa"``.
        split: ``train`` / ``val`` / ``test`` (or any ``[A-Za-z0-9_]+``).
        mos: mean overall rating, or None when the test rated only separate axes.
        scale: ``(min, max)`` of the rating scale (MOS 1..5, MUSHRA 0..100, AES 1..10); None if unknown.
        scores: per-axis mean ratings (e.g. NISQA ``noi col dis loud``, AES ``pq pc ce cu``).
        system: system / condition id, when the corpus names one.
        reference: path of the clean reference relative to the corpus root, when there is one.
        extra: further published fields (votes, standard deviations, rater count, condition text).
        reference_path: the reference's full path (``reference`` resolved), for the listening-test CSV.
        condition: the test condition or degradation type (NISQA condition text, ODAQ method, TCD-VoIP
            folder), when the corpus names one.
        listeners: how many listeners rated the stimulus, when the corpus says.
    """

    key: str
    path: Path
    corpus: str
    split: str
    mos: float | None
    scale: tuple[float, float] | None
    scores: dict[str, float] = field(default_factory=dict)
    system: str | None = None
    reference: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    reference_path: Path | None = None
    condition: str | None = None
    listeners: int | None = None

    def meta(self) -> dict[str, Any]:
        """JSON metadata of the sample (labels at top level so the DataModule can read them)."""
        return {
            "corpus": self.corpus,
            "split": self.split,
            "mos": self.mos,
            **self.scores,
            "scores": dict(self.scores),
            "scale": list(self.scale) if self.scale else None,
            "system": self.system,
            "reference": self.reference,
            **({"extra": self.extra} if self.extra else {}),
        }


Item = Rating | Skip


# ----------------------------------------------------------------------------------------------- helpers


def _num(text: Any) -> float | None:
    # "3.2" -> 3.2; "", "nan", "NA", None -> None
    if text is None:
        return None
    if isinstance(text, int | float):
        return float(text) if math.isfinite(float(text)) else None
    t = str(text).strip()
    if not t or t.lower() in ("nan", "na", "n/a", "none", "null"):
        return None
    v = float(t)
    return v if math.isfinite(v) else None


def _mean(values: Any) -> tuple[float | None, dict[str, Any]]:
    # a scalar or a list of individual ratings -> (mean, {"n": .., "std": ..})
    if isinstance(values, list):
        xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        if not xs:
            return None, {}
        m = sum(xs) / len(xs)
        sd = math.sqrt(sum((v - m) ** 2 for v in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
        return m, {"n": len(xs), "std": round(sd, 6)}
    return _num(values), {}


def _rel(path: str) -> Path:
    # published paths may use Windows separators
    return Path(*PureWindowsPath(path).parts) if "\\" in path else Path(path)


def _key(corpus: str, *parts: str) -> str:
    return safe_id("-".join([corpus, *[safe_id(p, 200) for p in parts if p]]), 90)


def _split_from_name(text: str, default: str) -> str:
    t = text.lower()
    for token, split in (
        ("train", "train"),
        ("val", "val"),
        ("dev", "val"),
        ("test", "test"),
        ("eval", "test"),
    ):
        if re.search(rf"(^|[^a-z]){token}", t):
            return split
    return default


def _relative(p: Path, root: Path) -> str:
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def _read_csv(path: Path, delimiter: str | None = None) -> list[dict[str, str]]:
    text = path.read_text(encoding="utf-8-sig")
    rows = csv.DictReader(text.splitlines(), delimiter=delimiter or sniff_delimiter(text))
    return [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in rows]


# ------------------------------------------------------------------------------------------------ NISQA


def read_nisqa(
    root: Path, *, csv_name: str = "NISQA_corpus_file.csv", split: str | None = None
) -> Iterator[Item]:
    """NISQA Corpus (Mittag et al. 2021): ``NISQA_corpus_file.csv`` plus the sub-corpus folders."""
    table = root / csv_name if root.is_dir() else root
    root = table.parent
    if not table.is_file():
        raise FileNotFoundError(f"NISQA: {table} not found (expected the corpus' {csv_name})")
    for i, row in enumerate(_read_csv(table)):
        where = f"{table.name}:{i + 2}"
        deg = row.get("filepath_deg") or ""
        if not deg:
            yield Skip(where, "nisqa: row has no filepath_deg")
            continue
        try:
            mos = _num(row.get("mos"))
            scores = {a: v for a in NISQA_AXES if (v := _num(row.get(a))) is not None}
        except ValueError as exc:
            yield Skip(where, f"nisqa: unparsable score ({exc})")
            continue
        if mos is None:
            yield Skip(where, "nisqa: no mos")
            continue
        db = row.get("db") or _rel(deg).parts[0]
        con = row.get("con") or ""
        ref = row.get("filepath_ref") or ""
        extra = {k: row[k] for k in ("votes", "lang", "source", "con_description") if row.get(k)}
        extra.update(
            {
                k: v
                for k in ("mos_std", *(f"{a}_std" for a in NISQA_AXES))
                if (v := _num(row.get(k))) is not None
            }
        )
        yield Rating(
            key=_key("nisqa", db, Path(_rel(deg)).stem),
            path=root / _rel(deg),
            corpus="nisqa",
            split=split or _split_from_name(db, "train"),
            mos=mos,
            scale=(1.0, 5.0),
            scores=scores,
            system=f"{db}/c{con}" if con else db,
            reference=str(_rel(ref)) if ref and ref.lower() != "nan" else None,
            extra=extra,
            reference_path=root / _rel(ref) if ref and ref.lower() != "nan" else None,
            condition=row.get("con_description") or None,
            listeners=int(v) if (v := _num(row.get("votes"))) is not None else None,
        )


# ------------------------------------------------------------------------------------------------- BVCC


def _bvcc_data_dir(root: Path) -> Path:
    for cand in (root, root / "DATA", root / "main" / "DATA"):
        if (cand / "sets").is_dir():
            return cand
    raise FileNotFoundError(f"BVCC: no sets/ folder under {root} (looked in ., DATA/, main/DATA/)")


def read_bvcc(root: Path, *, split: str | None = None) -> Iterator[Item]:
    """BVCC (VoiceMOS 2022 main track): ``sets/{train,val,test}_mos_list.txt`` and ``wav/``."""
    data = _bvcc_data_dir(root)
    lists = {"train": "train_mos_list.txt", "val": "val_mos_list.txt", "test": "test_mos_list.txt"}
    found = False
    for list_split, name in lists.items():
        path = data / "sets" / name
        if not path.is_file():
            continue
        found = True
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            cells = [c.strip() for c in line.split(",")]
            if not cells or not cells[0]:
                continue
            where = f"{name}:{i + 1}"
            try:
                mos = _num(cells[1]) if len(cells) > 1 else None
            except ValueError:
                yield Skip(where, f"bvcc: unparsable score {cells[1]!r}")
                continue
            if mos is None:
                yield Skip(where, "bvcc: no score (the list names the file only)")
                continue
            wav = cells[0]
            yield Rating(
                key=_key("bvcc", Path(wav).stem),
                path=data / "wav" / wav,
                corpus="bvcc",
                split=split or list_split,
                mos=mos,
                scale=(1.0, 5.0),
                system=wav.split("-")[0] if "-" in wav else None,
            )
    if not found:
        raise FileNotFoundError(f"BVCC: none of {sorted(lists.values())} in {data / 'sets'}")


# --------------------------------------------------------------------------------------- AES / AudioMOS


def _resolve_aes(data_path: str, root: Path) -> Path:
    p = Path(data_path)
    rel = data_path
    for placeholder in ("/your_path/", "your_path/"):
        if rel.startswith(placeholder):
            rel = rel[len(placeholder) :]
    cands = [p] if p.is_absolute() else []
    cands += [root / rel, root / p.name, root / "audio" / p.name, root / "wav" / p.name]
    for c in cands:
        if c.is_file():
            return c
        if not c.suffix:
            for suf in AUDIO_SUFFIXES:
                if c.with_name(c.name + suf).is_file():
                    return c.with_name(c.name + suf)
    return root / rel  # missing: the builder reports it


def read_aes(root: Path, *, split: str | None = None) -> Iterator[Item]:
    """AudioMOS 2025 track 2 / AES-natural: ``*.jsonl`` (or ``*_list.csv``) with the four aesthetic axes."""
    files = (
        [root]
        if root.is_file()
        else sorted(p for p in root.rglob("*") if p.suffix in (".jsonl", ".csv") and p.is_file())
    )
    rows: list[tuple[Path, int, dict[str, Any]]] = []
    for f in files:
        if f.suffix == ".jsonl":
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines()):
                if line.strip():
                    try:
                        rows.append((f, i + 1, json.loads(line)))
                    except ValueError as exc:
                        yield Skip(f"{f.name}:{i + 1}", f"aes: bad JSON ({exc})")
        else:
            table = _read_csv(f)
            if table and "data_path" in table[0] and any(a in table[0] for a in AES_AXES):
                rows.extend((f, i + 2, r) for i, r in enumerate(table))
    if not rows:
        raise FileNotFoundError(f"AES: no .jsonl/.csv with data_path and {sorted(AES_AXES)} under {root}")
    base = root.parent if root.is_file() else root
    for f, line, row in rows:
        where = f"{f.name}:{line}"
        data_path = str(row.get("data_path") or "")
        if not data_path:
            yield Skip(where, "aes: no data_path")
            continue
        scores: dict[str, float] = {}
        counts: dict[str, Any] = {}
        try:
            for name, short in AES_AXES.items():
                m, info = _mean(row.get(name))
                if m is not None:
                    scores[short] = m
                    if info:
                        counts[f"{short}_n"], counts[f"{short}_std"] = info["n"], info["std"]
        except (TypeError, ValueError) as exc:
            yield Skip(where, f"aes: unparsable rating ({exc})")
            continue
        if not scores:
            yield Skip(where, "aes: none of the four axes is rated")
            continue
        stem = Path(data_path).stem
        sys_match = re.search(r"-(sys[0-9A-Za-z]+)-", stem)
        domain = next((d for d in ("music", "speech", "sound") if d in f.stem.lower()), None)
        yield Rating(
            key=_key("aes", stem),
            path=_resolve_aes(data_path, base),
            corpus="aes",
            split=split or _split_from_name(f.stem.replace("annotations", "test"), "train"),
            mos=None,
            scale=(1.0, 10.0),
            scores=scores,
            system=sys_match.group(1) if sys_match else domain,
            extra={
                "data_path": data_path,
                **({"sample_id": row["sample_id"]} if row.get("sample_id") else {}),
                **counts,
            },
            condition=domain,
            listeners=max((v for k, v in counts.items() if k.endswith("_n")), default=None),
        )


# ------------------------------------------------------------------------------------------------- ODAQ


def _odaq_dir(root: Path) -> Path:
    for cand in (root, root / "ODAQ_listening_test", root / "ODAQ" / "ODAQ_listening_test"):
        if cand.is_dir() and (any(cand.glob("*.xml")) or (cand / "ODAQ_results.csv").is_file()):
            return cand
    raise FileNotFoundError(f"ODAQ: no MUSHRA *.xml results or ODAQ_results.csv under {root}")


def _odaq_items(
    test_dir: Path, ratings: dict[tuple[str, str], list[float]], split: str, source: str
) -> Iterator[Item]:
    for (trial, fname), scores in sorted(ratings.items()):
        m, info = _mean(scores)
        if m is None:
            yield Skip(f"{trial}/{fname}", "odaq: no valid score")
            continue
        folder = test_dir / trial
        ref = next((p for p in sorted(folder.glob("*.wav")) if "reference" in p.name.lower()), None)
        yield Rating(
            key=_key("odaq", trial, Path(fname).stem),
            path=folder / fname,
            corpus="odaq",
            split=split,
            mos=m,
            scale=(0.0, 100.0),
            system=Path(fname).stem,
            reference=_relative(ref, test_dir) if ref is not None else None,
            extra={
                "trial": trial,
                "method": trial.split("_")[0],
                "raters": info.get("n", 1),
                "score_std": info.get("std", 0.0),
                "scores_from": source,
            },
            reference_path=ref,
            condition=trial.split("_")[0],
            listeners=info.get("n", 1),
        )


def read_odaq(root: Path, *, split: str | None = None) -> Iterator[Item]:
    """ODAQ (Torcoli et al. 2024): MUSHRA XML results per listener, or ``ODAQ_results.csv``."""
    test_dir = _odaq_dir(root)
    ratings: dict[tuple[str, str], list[float]] = {}
    xmls = sorted(test_dir.glob("*.xml"))
    for x in xmls:
        try:
            tree = ET.parse(x)
        except ET.ParseError as exc:
            yield Skip(str(x), f"odaq: bad XML ({exc})")
            continue
        for trial in tree.getroot().iter("trial"):
            name = trial.get("trialName") or ""
            for tf in trial.iter("testFile"):
                fname, score = tf.get("fileName") or "", tf.get("score")
                try:
                    v = _num(score)
                except ValueError:
                    v = None
                if name and fname and v is not None:
                    ratings.setdefault((name, fname), []).append(v)
    if xmls:
        yield from _odaq_items(test_dir, ratings, split or "test", "xml")
        return
    table = _read_csv(test_dir / "ODAQ_results.csv")
    for i, row in enumerate(table):
        low = {k.lower(): v for k, v in row.items()}
        trial = low.get("trialname") or low.get("trial") or ""
        if not trial and low.get("method") and low.get("item"):
            trial = f"{low['method']}_{low['item']}"
        folder = test_dir / trial
        fname = low.get("filename") or low.get("file") or ""
        if not fname:
            for cand in (low.get("process"), low.get("condition")):
                if cand and (folder / f"{cand}.wav").is_file():
                    fname = f"{cand}.wav"
                    break
            else:
                fname = f"{low.get('process') or low.get('condition') or ''}.wav"
        try:
            v = _num(low.get("score"))
        except ValueError:
            v = None
        if not trial or fname == ".wav" or v is None:
            yield Skip(f"ODAQ_results.csv:{i + 2}", "odaq: row lacks trial, stimulus or score")
            continue
        ratings.setdefault((trial, fname), []).append(v)
    yield from _odaq_items(test_dir, ratings, split or "test", "csv")


# --------------------------------------------------------------------------------------------- TCD-VoIP


def read_tcd_voip(root: Path, *, split: str | None = None) -> Iterator[Item]:
    """TCD-VoIP (Harte et al. 2015): per degradation folder, ``C_*.wav``, ``ref/R_*.wav`` and a score CSV."""
    tables = []
    for f in sorted(root.rglob("*.csv")):
        rows = _read_csv(f)
        if rows and {"filename", "mos"} <= {k.lower() for k in rows[0]}:
            tables.append((f, rows))
    if not tables:
        raise FileNotFoundError(f"TCD-VoIP: no CSV with Filename,ConditionID,MOS columns under {root}")
    for f, rows in tables:
        folder = f.parent
        for i, row in enumerate(rows):
            low = {k.lower(): v for k, v in row.items()}
            where = f"{_relative(f, root)}:{i + 2}"
            name = low.get("filename", "")
            try:
                mos = _num(low.get("mos"))
            except ValueError:
                mos = None
            if not name or mos is None:
                yield Skip(where, "tcd_voip: row lacks Filename or MOS")
                continue
            if not name.lower().endswith(".wav"):
                name += ".wav"
            path = folder / name
            if not path.is_file():  # the CSV may sit one level above the audio
                hits = sorted(p for p in folder.rglob(name) if "ref" not in p.parent.name.lower())
                path = hits[0] if hits else path
            ref = path.parent / "ref" / re.sub(r"^C_", "R_", path.name)
            cond = low.get("conditionid", "")
            kind = path.parent.name.lower()
            yield Rating(
                key=_key("tcd", kind, Path(name).stem),
                path=path,
                corpus="tcd_voip",
                split=split or "test",
                mos=mos,
                scale=(1.0, 5.0),
                system=f"{kind}/{cond}" if cond else kind,
                reference=_relative(ref, root) if ref.is_file() else None,
                reference_path=ref if ref.is_file() else None,
                condition=kind,
            )


# -------------------------------------------------------------------------------------------- generic


# header names of the generic CSV's file and score columns (shared with aqa eval --test: aqa.tables)
_GENERIC = {"file": COLUMN_ALIASES["degraded"], "score": COLUMN_ALIASES["score"]}
GENERIC_LAYOUT = """generic CSV layout (--format csv; --src is the CSV file):
  file,score[,reference][,system][,split][,condition][,listener_count]
  file       the rated audio (also named degraded, path, filename, wav, audio, ...); relative: from the CSV's folder
  score      its mean rating (also named mos, rating, ratingscore, ...); rows without a number are skipped
  (separated by , ; or tab; per-listener ratings: --format long or lists, below)
  reference  the clean original, relative to the CSV's folder (optional)
  system     system / condition id (optional); split: train, val or test (optional: hashed into train/val)
  condition, listener_count: kept in the listening-test CSV (optional)
  A header is optional when the columns come in the order file,score,reference,system,split."""


def read_csv_scores(
    root: Path, *, split: str | None = None, corpus: str = "csv", scale: tuple[float, float] | None = None
) -> Iterator[Item]:
    """Generic ``file,score[,reference][,system][,split][,condition][,listener_count]`` CSV (header optional
    in that column order; :data:`GENERIC_LAYOUT`). A listening-test CSV (``degraded,score,...``) reads as one."""
    if not root.is_file():
        raise FileNotFoundError(f"generic CSV: {root} is not a file")
    text = root.read_text(encoding="utf-8-sig")
    lines = list(csv.reader(text.splitlines(), delimiter=sniff_delimiter(text)))
    lines = [[c.strip() for c in r] for r in lines if r and r[0].strip() and not r[0].startswith("#")]
    if not lines:
        return
    head = [norm_column(c) for c in lines[0]]
    if any(h in _GENERIC["file"] for h in head) and any(h in _GENERIC["score"] for h in head):
        cols = {h: i for i, h in enumerate(head)}
        body = lines[1:]
        fi = next(cols[h] for h in _GENERIC["file"] if h in cols)
        si = next(cols[h] for h in _GENERIC["score"] if h in cols)
        ri, yi, pi = cols.get("reference", cols.get("ref")), cols.get("system"), cols.get("split")
        ci, li = cols.get("condition"), cols.get("listener_count")
    else:
        body, fi, si, ri, yi, pi, ci, li = lines, 0, 1, 2, 3, 4, None, None
    base = root.parent
    for n, r in enumerate(body):
        where = f"{root.name}:{n + 1}"

        def cell(i: int | None, r: list[str] = r) -> str:
            return r[i] if i is not None and i < len(r) else ""

        try:
            score = _num(cell(si))
        except ValueError:
            score = None
        if not cell(fi) or score is None:
            yield Skip(where, "csv: row lacks file or score")
            continue
        p = Path(cell(fi)).expanduser()
        ref = Path(cell(ri)).expanduser() if cell(ri) else None
        try:
            listeners = int(float(cell(li))) if cell(li) else None
        except ValueError:
            listeners = None
        yield Rating(
            key=_key(corpus, *p.with_suffix("").parts[-2:]),
            path=p if p.is_absolute() else base / p,
            corpus=corpus,
            split=split or cell(pi),  # "" = not given: the recipe hashes it into train/val
            mos=score,
            scale=scale,
            system=cell(yi) or None,
            reference=cell(ri) or None,
            reference_path=(ref if ref.is_absolute() else base / ref) if ref else None,
            condition=cell(ci) or None,
            listeners=listeners,
        )


READERS: dict[str, Callable[..., Iterator[Item]]] = {
    "nisqa": read_nisqa,
    "bvcc": read_bvcc,
    "aes": read_aes,
    "odaq": read_odaq,
    "tcd_voip": read_tcd_voip,
    "csv": read_csv_scores,
}


def detect_layout(root: Path) -> str:
    """Guess the layout of ``root`` from the files the corpora publish.

    Raises:
        ValueError: no known layout matches.
    """
    if root.is_file():
        return (
            "aes"
            if root.suffix == ".jsonl" or "data_path" in root.read_text(encoding="utf-8")[:500]
            else "csv"
        )
    if (root / "NISQA_corpus_file.csv").is_file():
        return "nisqa"
    try:
        _bvcc_data_dir(root)
        return "bvcc"
    except FileNotFoundError:
        pass
    try:
        _odaq_dir(root)
        return "odaq"
    except FileNotFoundError:
        pass
    if any(root.rglob("*.jsonl")):
        return "aes"
    if any(root.rglob("C_*.wav")):
        return "tcd_voip"
    raise ValueError(f"cannot tell the listening-test layout of {root}; pass --format ({', '.join(READERS)})")


def read_corpus(root: str | Path, layout: str = "auto", **opts: Any) -> tuple[list[Rating], list[Skip]]:
    """Read a corpus with ``READERS[layout]`` (``"auto"``: :func:`detect_layout`).

    Returns:
        ``(ratings, skipped_rows)``; duplicate keys get ``_2``, ``_3``... suffixes.

    Raises:
        KeyError: unknown layout. FileNotFoundError: the corpus' score files are missing.
    """
    root = Path(root).expanduser()
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in READERS:
        raise KeyError(f"unknown listening-test layout {layout!r}; choose from {sorted(READERS)}")
    ratings: list[Rating] = []
    skipped: list[Skip] = []
    seen: dict[str, int] = {}
    for item in READERS[layout](root, **opts):
        if isinstance(item, Skip):
            skipped.append(item)
            continue
        seen[item.key] = seen.get(item.key, 0) + 1
        if seen[item.key] > 1:
            item = Rating(**{**item.__dict__, "key": f"{item.key}_{seen[item.key]}"})
        ratings.append(item)
    return ratings, skipped
