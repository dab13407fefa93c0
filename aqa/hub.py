"""Published weights on first use: Hugging Face repos through ``huggingface_hub``, other files from their URLs.

Two routes, one rule each:

- **Hugging Face repos** (MERT, WavLM, wav2vec 2.0, MuQ): :func:`fetch_hf` goes through ``huggingface_hub`` and
  its conventions (``HF_HOME`` / ``HF_HUB_CACHE`` and the cache layout, ``HF_ENDPOINT``, ``HF_TOKEN`` or
  ``hf auth login`` for gated repos, ``HF_HUB_OFFLINE``) at the revision the encoder YAML pins (``revision:``).
  A revision already in the cache is read without any request.
- **Files published elsewhere** (BEATs, M2D): :func:`fetch_url` downloads the official release URL into
  ``$AQA_CACHE/weights`` (default ``$XDG_CACHE_HOME/aqa``, else ``~/.cache/aqa``) with a progress bar, into a
  temporary name in the same folder, checks its sha256 (the YAML ``sha256:`` when given; otherwise the first
  download's is recorded beside the file, trust on first use) and only then renames it into place, so a
  partial or corrupted file is never used (a failed check deletes it). Every later use re-checks the file
  against its recorded sha256 (``NAME.sha256``, ``sha256sum -c`` format). ``URL#member`` names a file inside a
  published ``.zip``: the archive is verified, the member extracted the same way, the archive removed.

Offline (``HF_HUB_OFFLINE=1``, also for URL files) or unreachable, a missing file raises
:class:`WeightsUnavailable`: one line naming the file or URL, the cache path, and the command that pre-fetches
it (``aqa download NAME``, for clusters whose compute nodes have no internet). Local paths are never touched.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

# report(status, source, path): status "fetched" | "cached"; source the repo file or URL; path the local file
Report = Callable[[str, str, Path], None]
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CHUNK = 1 << 20


class WeightsUnavailable(FileNotFoundError):
    """Published weights that are not in the cache and cannot be downloaded now (offline, unreachable, failed
    verification). ``str(err)`` is one line; ``missing`` has one line per missing file (``aqa download``)."""

    def __init__(self, message: str, missing: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.missing = list(missing) or [message]


class ChecksumMismatch(WeightsUnavailable):
    """A downloaded or cached file whose sha256 is not the expected one (the file has been deleted)."""


# ----------------------------------------------------------------------------------------------------------
# Where things are, and whether the network may be used


def _true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) as set now or when ``huggingface_hub`` was imported."""
    from huggingface_hub import constants

    return constants.is_offline_mode() or _true(os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE"))


def aqa_cache_dir() -> Path:
    """Folder of URL-downloaded weights: ``$AQA_CACHE/weights``, default ``$XDG_CACHE_HOME/aqa/weights``
    (``~/.cache/aqa/weights``)."""
    root = os.environ.get("AQA_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aqa"
    return Path(root).expanduser() / "weights"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache as ``huggingface_hub`` resolves it, read now: ``HF_HUB_CACHE``, else
    ``$HF_HOME/hub``, else the library's default."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def hf_endpoint() -> str:
    """``HF_ENDPOINT`` read now (mirrors, a test server), else the library's endpoint."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def is_url(text: object) -> bool:
    """Whether ``text`` is an http(s) URL (a checkpoint to download) rather than a path or hub id."""
    return isinstance(text, str) and text.startswith(("https://", "http://"))


def is_hub_id(text: object) -> bool:
    """Whether ``text`` looks like a Hugging Face repo id (``owner/name``)."""
    return isinstance(text, str) and bool(_HUB_ID_RE.match(text))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _report(report: Report | None, status: str, source: str, path: Path) -> None:
    if report is not None:
        report(status, source, path)


def _hint(hint: str) -> str:
    return f"; pre-fetch it with `{hint}` on a machine with internet" if hint else ""


@contextmanager
def _lock(path: Path):  # noqa: ANN202
    # one download per file at a time (DDP ranks on one node build the encoder together); others wait, then
    # find it cached
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.parent / f".{path.name}.lock")):
        yield


# ----------------------------------------------------------------------------------------------------------
# Files from URLs


def url_filename(url: str) -> str:
    """The file name a URL downloads to: the last path segment, query and fragment dropped."""
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    if not name or name in {".", ".."}:
        raise ValueError(f"{url}: no file name in the URL path")
    return name


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _recorded(path: Path) -> str | None:
    sidecar = _sidecar(path)
    if not sidecar.is_file():
        return None
    text = sidecar.read_text(encoding="utf-8").split()
    return text[0].lower() if text else None


def _record(path: Path, digest: str) -> None:
    # sha256sum format, written atomically beside the file
    sidecar = _sidecar(path)
    tmp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{digest}  {path.name}\n", encoding="utf-8")
    os.replace(tmp, sidecar)


def _verify_cached(path: Path, expected: str | None, hint: str) -> bool:
    """True when the cached ``path`` matches ``expected`` (else its recorded sha256; neither: record it now).

    A mismatch deletes the file and its record; offline that raises :class:`ChecksumMismatch`, online it
    returns False so the caller downloads the file again.
    """
    actual = sha256_file(path)
    want = (expected or _recorded(path) or "").lower() or None
    if want is None:
        log.warning("%s: no sha256 recorded; trusting this file and recording %s", path, actual)
        _record(path, actual)
        return True
    if actual == want:
        if _recorded(path) != actual:
            _record(path, actual)
        return True
    path.unlink(missing_ok=True)
    _sidecar(path).unlink(missing_ok=True)
    message = f"{path}: sha256 {actual} is not the expected {want}; the file was deleted"
    if offline():
        raise ChecksumMismatch(message + _hint(hint))
    log.warning("%s; downloading it again", message)
    return False


def _cached(dest: Path, source: str, expected: str | None, hint: str, report: Report | None) -> bool:
    """True (reported as "cached") when ``dest`` is cached and verifies (:func:`_verify_cached`); False when it
    must be downloaded. Offline, a file that is not cached raises :class:`WeightsUnavailable` naming ``source``."""
    if dest.is_file() and _verify_cached(dest, expected, hint):
        _report(report, "cached", source, dest)
        return True
    if offline():
        raise WeightsUnavailable(f"{source} is not in the cache ({dest}) and HF_HUB_OFFLINE is set{_hint(hint)}",
                                 [f"{source} -> {dest}"])
    return False


def _stream(source: IO[bytes], dest: Path, total: int | None) -> tuple[Path, int, str]:
    # copy into a temporary file beside `dest` (same file system: the rename is atomic) with a progress bar;
    # returns (temporary file, bytes, sha256); the caller verifies, then renames or deletes it
    from tqdm.auto import tqdm

    digest, count = hashlib.sha256(), 0
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, disable=None, leave=False
        ) as bar:
            while block := source.read(_CHUNK):
                out.write(block)
                digest.update(block)
                count += len(block)
                bar.update(len(block))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, count, digest.hexdigest()


def _install(tmp: Path, dest: Path, digest: str) -> None:
    os.replace(tmp, dest)
    _record(dest, digest)


def _download(url: str, dest: Path, expected: str | None, hint: str, timeout: float) -> str:
    """Download ``url`` to ``dest`` atomically; returns its sha256. Raises :class:`WeightsUnavailable`."""
    request = urllib.request.Request(url, headers={"User-Agent": "aqa (python urllib)"})
    tmp: Path | None = None
    try:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                tmp, count, digest = _stream(response, dest, total)
        except (OSError, http.client.HTTPException) as err:  # URLError, HTTPError, timeouts, resets
            reason = err if isinstance(err, urllib.error.HTTPError) else (getattr(err, "reason", None) or err)
            raise WeightsUnavailable(f"{url} could not be downloaded to {dest} ({reason}){_hint(hint)}") from err
        if total is not None and count != total:
            raise WeightsUnavailable(
                f"{url}: the connection closed after {count} of {total} bytes; nothing was kept in {dest.parent}"
                + _hint(hint)
            )
        if expected and digest != expected.lower():
            raise ChecksumMismatch(
                f"{url}: sha256 {digest} is not the expected {expected.lower()}; the download was deleted "
                f"(nothing kept in {dest.parent})"
            )
        _install(tmp, dest, digest)
        tmp = None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return digest


def fetch_url(
    url: str,
    sha256: str | None = None,
    cache_dir: str | Path | None = None,
    hint: str = "",
    report: Report | None = None,
    timeout: float = 60.0,
) -> Path:
    """The file at ``url`` from the cache, downloaded (atomically, verified) when absent.

    Args:
        url: the official release URL (query strings such as signed-URL tokens are kept for the request).
        sha256: expected hex digest (the YAML ``sha256:``); None: the first download's is recorded and
            every later use is checked against it (trust on first use).
        cache_dir: folder of the file (default :func:`aqa_cache_dir`); the file keeps the URL's file name.
        hint: the command that pre-fetches it, for the error message (``aqa download beats_iter3_plus_as2m``).
        report: called with ("fetched" | "cached", url, path).
        timeout: seconds without data before the connection counts as lost.

    Raises:
        WeightsUnavailable: offline, unreachable, interrupted (one line: URL, cache path, ``hint``).
        ChecksumMismatch: the download (or the cached file, offline) fails the sha256 check.
    """
    dest = Path(cache_dir or aqa_cache_dir()).expanduser() / url_filename(url)
    with _lock(dest):
        if _cached(dest, url, sha256, hint, report):
            return dest
        digest = _download(url, dest, sha256, hint, timeout)
        if not sha256:
            log.info("%s: sha256 %s recorded on first use in %s", dest.name, digest, _sidecar(dest))
    _report(report, "fetched", url, dest)
    return dest


def _member_path(folder: Path, member: str) -> Path:
    parts = PurePosixPath(member).parts
    if not parts or member.startswith("/") or ".." in parts:
        raise ValueError(f"archive member {member!r} must be a relative path inside the archive")
    return folder.joinpath(*parts)


def fetch_archive_member(
    url: str,
    member: str,
    sha256: str | None = None,
    cache_dir: str | Path | None = None,
    hint: str = "",
    report: Report | None = None,
) -> Path:
    """One file of a published ``.zip``: ``cache_dir/member`` (its folders kept: M2D reads its input size from
    the release folder's name). The archive is fetched and verified by :func:`fetch_url` (``sha256`` is the
    archive's), the member extracted to a temporary name (zip CRC checked), renamed into place with its own
    sha256 recorded, and the archive deleted. Raises as :func:`fetch_url`; a member absent from the archive
    raises :class:`WeightsUnavailable` listing the archive's files."""
    folder = Path(cache_dir or aqa_cache_dir()).expanduser()
    dest = _member_path(folder, member)
    source = f"{url}#{member}"
    with _lock(dest):
        if _cached(dest, source, None, hint, report):
            return dest
        archive = fetch_url(url, sha256, folder, hint)
        try:
            with zipfile.ZipFile(archive) as zf:
                try:
                    info = zf.getinfo(member)
                except KeyError:
                    files = [n for n in zf.namelist() if not n.endswith("/")]
                    raise WeightsUnavailable(f"{url} has no {member!r}; it holds {files}") from None
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src:  # reading to the end checks the member's CRC
                    tmp, _, digest = _stream(src, dest, info.file_size)
                _install(tmp, dest, digest)
        except zipfile.BadZipFile as err:
            archive.unlink(missing_ok=True)
            _sidecar(archive).unlink(missing_ok=True)
            raise WeightsUnavailable(f"{url}: not a readable zip archive ({err}); it was deleted{_hint(hint)}") from err
        archive.unlink(missing_ok=True)
        _sidecar(archive).unlink(missing_ok=True)
    _report(report, "fetched", source, dest)
    return dest


def resolve_file(
    checkpoint: str | Path, sha256: str | None = None, hint: str = "", report: Report | None = None
) -> Path:
    """A checkpoint file: a URL (``URL`` or ``URL#member-of-zip``) is fetched into the cache; anything else is
    a local path, returned as given (the loader says when it does not exist)."""
    if not is_url(checkpoint):
        return Path(checkpoint).expanduser()
    url, _, member = str(checkpoint).partition("#")
    if member:
        return fetch_archive_member(url, member, sha256, hint=hint, report=report)
    return fetch_url(url, sha256, hint=hint, report=report)


# ----------------------------------------------------------------------------------------------------------
# Hugging Face repos


def _network_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub import errors

    found: list[type[BaseException]] = [OSError, errors.HfHubHTTPError, errors.OfflineModeIsEnabled]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "RequestException")):
        try:
            found.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _cached_files(repo_id: str, revision: str, names: Sequence[str], cache: Path) -> dict[str, Path | bool | None]:
    # per file: its cached path, False when the cache records that the revision has no such file, None unknown
    from huggingface_hub import try_to_load_from_cache

    found: dict[str, Path | bool | None] = {}
    for name in names:
        hit = try_to_load_from_cache(repo_id, name, cache_dir=str(cache), revision=revision)
        found[name] = Path(hit) if isinstance(hit, str) else (False if hit is not None else None)
    return found


def _snapshot_dir(repo_id: str, commit: str, cache: Path) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--")) / "snapshots" / commit


def fetch_hf(
    repo_id: str,
    revision: str | None = None,
    required: Sequence[str] = ("config.json",),
    optional: Sequence[str] = (),
    one_of: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    hint: str = "",
    report: Report | None = None,
) -> Path:
    """The snapshot folder of a Hugging Face repo at ``revision``, with the files a loader reads.

    A revision whose files are all in the cache is returned without any request (offline, only ``required``
    and one of ``one_of`` need be there). Otherwise ``model_info`` lists the revision's files and
    ``hf_hub_download`` fetches each missing one (the library's atomic download, progress bar, locks,
    endpoint and token); files the revision lacks are recorded in the cache's ``.no_exist`` as the library
    does, so the next use makes no request either.

    Args:
        repo_id: ``owner/name``.
        revision: a commit hash (pinned in the encoder YAML), branch or tag; None: ``main``.
        required: files the loader needs.
        optional: files read when the revision has them (``preprocessor_config.json``).
        one_of: alternatives in order of preference, the first the revision has is fetched
            (``model.safetensors``, ``pytorch_model.bin``).
        cache_dir: the hub cache (default :func:`hf_cache_dir`).
        hint: the command that pre-fetches it, for the error message.
        report: called with ("fetched" | "cached", "repo@rev/file", path) per file.

    Raises:
        WeightsUnavailable: not cached and offline or unreachable, or the repo / revision / a required file
            does not exist or is not accessible (gated: set ``HF_TOKEN`` or run ``hf auth login``).
    """
    from huggingface_hub import HfApi, hf_hub_download

    revision = revision or "main"
    cache = Path(cache_dir or hf_cache_dir()).expanduser()
    where = f"{repo_id}@{revision[:12]}"
    cached = _cached_files(repo_id, revision, [*required, *optional, *one_of], cache)
    weights = next((n for n in one_of if isinstance(cached[n], Path)), None)
    lacking = [n for n in required if not isinstance(cached[n], Path)] + ([] if weights or not one_of else
                                                                          [" or ".join(one_of)])
    unknown = [n for n in optional if cached[n] is None]  # neither cached nor known to be absent
    if not lacking and (not unknown or offline()):
        files = [n for n in (*required, *optional) if isinstance(cached[n], Path)] + ([weights] if weights else [])
        for name in files:
            _report(report, "cached", f"{where}/{name}", cached[name])  # type: ignore[arg-type]
        return cached[files[0]].parent if files else cache  # type: ignore[union-attr]
    if offline():
        raise WeightsUnavailable(
            f"{repo_id}@{revision}: no cached snapshot with {', '.join(lacking)} in the Hugging Face cache "
            f"{cache}, and HF_HUB_OFFLINE is set{_hint(hint)}",
            [f"{where}/{n} -> {cache}" for n in lacking],
        )

    endpoint = hf_endpoint()
    net = _network_errors()
    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision)
    except net as err:
        raise WeightsUnavailable(
            f"{endpoint}/{repo_id} (revision {revision}) could not be reached or read ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); cache {cache}{_hint(hint)}"
        ) from err
    commit = info.sha or revision
    names = {s.rfilename for s in info.siblings or []}
    absent = [n for n in required if n not in names]
    if absent:
        raise WeightsUnavailable(f"{repo_id}@{commit} has no {absent} (it has {sorted(names)})")
    wanted = [*required, *(n for n in optional if n in names)]
    if one_of:
        choice = next((n for n in one_of if n in names), None)
        if choice is None:
            raise WeightsUnavailable(f"{repo_id}@{commit} has none of {list(one_of)} (it has {sorted(names)})")
        wanted.append(choice)
    for name in optional:  # remember that this revision has no such file, as hf_hub_download does on a 404
        if name not in names:
            marker = cache / ("models--" + repo_id.replace("/", "--")) / ".no_exist" / commit / name
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    if revision != commit:  # refs/<branch> -> commit, so the next use of this revision finds the snapshot
        ref = cache / ("models--" + repo_id.replace("/", "--")) / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    for name in wanted:
        known = cached.get(name)
        if isinstance(known, Path) and known.parent == _snapshot_dir(repo_id, commit, cache):
            _report(report, "cached", f"{where}/{name}", known)
            continue
        url = f"{endpoint}/{repo_id}/resolve/{commit}/{name}"
        try:
            path = Path(hf_hub_download(repo_id, name, revision=commit, cache_dir=str(cache), endpoint=endpoint))
        except net as err:
            raise WeightsUnavailable(
                f"{url} could not be downloaded to {cache} ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}){_hint(hint)}"
            ) from err
        _report(report, "fetched", f"{where}/{name}", path)
    return _snapshot_dir(repo_id, commit, cache)


__all__ = [
    "ChecksumMismatch",
    "Report",
    "WeightsUnavailable",
    "aqa_cache_dir",
    "fetch_archive_member",
    "fetch_hf",
    "fetch_url",
    "hf_cache_dir",
    "hf_endpoint",
    "is_hub_id",
    "is_url",
    "offline",
    "resolve_file",
    "sha256_file",
    "url_filename",
]
