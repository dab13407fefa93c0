"""Weights on first use (aqa/hub.py) against loopback servers: a minimal Hugging Face-compatible endpoint (the
routes huggingface_hub's model_info / hf_hub_download call, reached through HF_ENDPOINT) and a plain HTTP server
for release URLs, both on 127.0.0.1, started per test in a daemon thread and stopped at teardown (a watchdog
stops them after 60 s in any case). Tiny checkpoints in the published layouts; HF_HOME and AQA_CACHE in tmp_path.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import types
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import file_download
from test_hf_layouts import HF_FAMILIES, published_state, write_hf_checkpoint, write_mert_checkpoint
from test_muq import tiny as tiny_muq
from test_muq import write_muq_checkpoint as write_muq
from test_zoo import beats_published_blob, m2d_published_state
from test_zoo import tiny as tiny_zoo
from tiny_encoders import build_tiny
from tiny_encoders import tiny as tiny_mert

from aqa.config import CONFIG_DIR
from aqa.download import download
from aqa.encoders import build_encoder
from aqa.hub import ChecksumMismatch, WeightsUnavailable, fetch_url, sha256_file

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "m-a-p/MERT-v1-95M"


class Loopback:
    """One HTTP server on 127.0.0.1 that is both a Hugging Face endpoint and a file host.

    ``repos[repo_id][filename] = bytes``: ``GET /api/models/REPO/revision/REV`` (model info: sha and files),
    ``HEAD|GET /REPO/resolve/REV/FILE`` with the headers huggingface_hub reads (X-Repo-Commit, ETag,
    Content-Length; 404 + X-Error-Code for absent files). ``files[name] = bytes``: ``GET /files/NAME``.
    ``truncate``: names whose body stops halfway and the connection closes. ``requests`` logs every request.
    """

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                self._serve(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._serve(body=True)

            def _send(self, status: int, data: bytes, body: bool, headers: dict[str, str], name: str = "") -> None:
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(data))}.items():
                    self.send_header(key, value)
                if name in outer.truncate and body:
                    self.send_header("Connection", "close")
                self.end_headers()
                if not body:
                    return
                if name in outer.truncate:  # half the promised bytes, then the connection drops
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

            def _serve(self, body: bool) -> None:
                outer.requests.append(f"{self.command} {self.path}")
                path = self.path.split("?")[0]
                info = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path)
                resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if info and info.group(1) in outer.repos:
                    files = outer.repos[info.group(1)]
                    data = json.dumps({"id": info.group(1), "sha": _commit(info.group(2)),
                                       "siblings": [{"rfilename": n} for n in sorted(files)]}).encode()
                    return self._send(200, data, body, {"Content-Type": "application/json"})
                if resolve and resolve.group(1) in outer.repos:
                    repo, rev, name = resolve.groups()
                    commit = {"X-Repo-Commit": _commit(rev)}
                    if name not in outer.repos[repo]:
                        return self._send(404, b"", body, {**commit, "X-Error-Code": "EntryNotFound"})
                    data = outer.repos[repo][name]
                    etag = {"ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
                    return self._send(200, data, body, {**commit, **etag}, name)
                if path.startswith("/files/") and path[len("/files/"):] in outer.files:
                    name = path[len("/files/"):]
                    return self._send(200, outer.files[name], body, {"Content-Type": "application/octet-stream"}, name)
                return self._send(404, b"not found", body, {"X-Error-Code": "RepoNotFound"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.watchdog = threading.Timer(60.0, self.server.shutdown)

    def __enter__(self) -> Loopback:
        self.thread.start()
        self.watchdog.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.watchdog.cancel()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _commit(revision: str) -> str:
    return revision if re.fullmatch(r"[0-9a-f]{40}", revision) else COMMIT


@pytest.fixture
def loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Loopback]:
    """The server, online mode, and every cache inside tmp_path (huggingface_hub reads HF_HUB_OFFLINE once at
    import into constants.HF_HUB_OFFLINE, which its request hook checks: patched; aqa.hub reads HF_ENDPOINT,
    HF_HOME and AQA_CACHE at call time and hands endpoint and cache to huggingface_hub explicitly)."""
    with Loopback() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        monkeypatch.setenv("AQA_CACHE", str(tmp_path / "aqa"))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        # huggingface_hub waits 1 s before each of its 5 resume attempts: not here
        monkeypatch.setattr(file_download, "time", types.SimpleNamespace(sleep=lambda s: None))
        yield server


def go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)


def files_of(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def mert_repo(directory: Path) -> tuple[dict[str, bytes], torch.nn.Module]:
    torch.manual_seed(0)
    original = tiny_mert().eval()
    write_mert_checkpoint(directory, published_state(original), "bin")
    return {p.name: p.read_bytes() for p in directory.iterdir()}, original


def beats_file(path: Path) -> tuple[bytes, torch.nn.Module]:
    torch.manual_seed(0)
    original = tiny_zoo("beats").eval()
    torch.save(beats_published_blob(original), path)
    return path.read_bytes(), original


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------- Hugging Face


def test_hub_id_downloads_on_first_use_at_the_pinned_revision_then_loads_from_cache_without_requests(
    loopback: Loopback, tmp_path: Path
) -> None:
    loopback.repos[REPO], original = mert_repo(tmp_path / "published")
    cfg = {"name": "mert_v1_95m", "checkpoint": REPO, "revision": COMMIT, "adapter": None}
    first = build_encoder(cfg)
    assert same_weights(first, original)
    fetched = [r for r in loopback.requests if r.startswith("GET") and "/resolve/" in r]
    assert len(fetched) == 3 and all(f"/resolve/{COMMIT}/" in r for r in fetched)  # config, preprocessor, weights
    snapshot = tmp_path / "hf" / "hub" / "models--m-a-p--MERT-v1-95M" / "snapshots" / COMMIT
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", "preprocessor_config.json", "pytorch_model.bin"]
    seen = len(loopback.requests)
    assert same_weights(build_encoder(cfg), original)
    assert len(loopback.requests) == seen  # the second use makes no request


def test_hub_id_offline_refuses_in_one_line_naming_repo_cache_and_command(
    loopback: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loopback.repos[REPO], _ = mert_repo(tmp_path / "published")
    go_offline(monkeypatch)
    with pytest.raises(WeightsUnavailable) as err:
        build_encoder({"name": "mert_v1_95m", "checkpoint": REPO, "revision": COMMIT, "adapter": None})
    message = str(err.value)
    assert "\n" not in message and REPO in message and str(tmp_path / "hf" / "hub") in message
    assert "aqa download mert_v1_95m" in message and "HF_HUB_OFFLINE" in message
    assert loopback.requests == []


def test_hub_download_interrupted_mid_body_keeps_nothing_and_the_next_use_is_whole(
    loopback: Loopback, tmp_path: Path
) -> None:
    loopback.repos[REPO], original = mert_repo(tmp_path / "published")
    loopback.truncate.add("pytorch_model.bin")
    cfg = {"name": "mert_v1_95m", "checkpoint": REPO, "revision": COMMIT, "adapter": None}
    with pytest.raises(WeightsUnavailable, match="pytorch_model.bin could not be downloaded"):
        build_encoder(cfg)
    repo_cache = tmp_path / "hf" / "hub" / "models--m-a-p--MERT-v1-95M"
    assert not any("pytorch_model.bin" in f or f.endswith(".incomplete") for f in files_of(repo_cache))
    loopback.truncate.clear()
    assert same_weights(build_encoder(cfg), original)


# ------------------------------------------------------------------------------------------- release URLs


def test_url_checkpoint_downloads_verified_atomically_then_is_checked_on_every_use_without_requests(
    loopback: Loopback, tmp_path: Path
) -> None:
    data, original = beats_file(tmp_path / "BEATs_iter3_plus_AS2M.pt")
    loopback.files["BEATs_iter3_plus_AS2M.pt"] = data
    digest = hashlib.sha256(data).hexdigest()
    cfg = {"name": "beats_iter3_plus_as2m", "checkpoint": f"{loopback.url}/files/BEATs_iter3_plus_AS2M.pt?sig=x",
           "sha256": digest, "adapter": None}
    assert same_weights(build_encoder(cfg), original)
    cache = tmp_path / "aqa" / "weights"
    assert files_of(cache) == ["BEATs_iter3_plus_AS2M.pt", "BEATs_iter3_plus_AS2M.pt.sha256"]
    assert (cache / "BEATs_iter3_plus_AS2M.pt.sha256").read_text() == f"{digest}  BEATs_iter3_plus_AS2M.pt\n"
    seen = len(loopback.requests)
    assert seen == 1 and same_weights(build_encoder(cfg), original)
    assert len(loopback.requests) == seen


def test_url_download_failing_its_checksum_is_deleted_and_a_corrupted_cache_file_is_caught(
    loopback: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = beats_file(tmp_path / "b.pt")
    loopback.files["b.pt"] = data
    cache = tmp_path / "aqa" / "weights"
    with pytest.raises(ChecksumMismatch, match="sha256 .* is not the expected 0{64}; the download was deleted"):
        fetch_url(f"{loopback.url}/files/b.pt", "0" * 64)
    assert files_of(cache) == []  # neither the file nor a partial one
    # trust on first use: the first download's sha256 is recorded and later uses are checked against it
    path = fetch_url(f"{loopback.url}/files/b.pt", None)
    assert (cache / "b.pt.sha256").read_text().split()[0] == sha256_file(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # bit rot / tampering
    go_offline(monkeypatch)
    with pytest.raises(ChecksumMismatch, match="is not the expected"):
        fetch_url(f"{loopback.url}/files/b.pt", None, hint="aqa download x")
    assert files_of(cache) == []


def test_url_download_interrupted_mid_body_leaves_nothing_and_offline_names_url_cache_and_command(
    loopback: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, original = beats_file(tmp_path / "BEATs_iter3_plus_AS2M.pt")
    loopback.files["BEATs_iter3_plus_AS2M.pt"] = data
    loopback.truncate.add("BEATs_iter3_plus_AS2M.pt")
    url = f"{loopback.url}/files/BEATs_iter3_plus_AS2M.pt"
    cfg = {"name": "beats_iter3_plus_as2m", "checkpoint": url, "sha256": None, "adapter": None}
    with pytest.raises(WeightsUnavailable, match=f"closed after {len(data) // 2} of {len(data)} bytes"):
        build_encoder(cfg)
    cache = tmp_path / "aqa" / "weights"
    assert files_of(cache) == []
    with monkeypatch.context() as offline:
        go_offline(offline)
        with pytest.raises(WeightsUnavailable) as err:
            build_encoder(cfg)
        message = str(err.value)
        assert "\n" not in message and url in message and str(cache) in message
        assert "aqa download beats_iter3_plus_as2m" in message
    loopback.truncate.clear()
    assert same_weights(build_encoder(cfg), original)  # a TOFU download, whole


def test_zip_release_member_is_extracted_with_its_folder_and_the_archive_removed(
    loopback: Loopback, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    original = tiny_zoo("m2d").eval()
    folder = "m2d_vit_base-80x64p16x16-221006-mr7"
    buffer = io.BytesIO()
    torch.save(m2d_published_state(original, norm_stats=True), buffer)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{folder}/checkpoint-300.pth", buffer.getvalue())
        zf.writestr(f"{folder}/log.txt", "epoch 300")
    loopback.files[f"{folder}.zip"] = archive.getvalue()
    url = f"{loopback.url}/files/{folder}.zip"
    cfg = {"name": "m2d_vit_base", "checkpoint": f"{url}#{folder}/checkpoint-300.pth",
           "sha256": hashlib.sha256(archive.getvalue()).hexdigest(), "adapter": None}
    assert same_weights(build_encoder(cfg), original)  # the input size read from the extracted folder's name
    cache = tmp_path / "aqa" / "weights"
    assert files_of(cache) == [f"{folder}/checkpoint-300.pth", f"{folder}/checkpoint-300.pth.sha256"]
    with pytest.raises(WeightsUnavailable, match=r"has no 'x/missing.pth'; it holds \["):
        build_encoder({**cfg, "checkpoint": f"{url}#x/missing.pth"})


# ------------------------------------------------------------------------------------------- aqa download


def test_aqa_download_mmmos_fetches_then_finds_cached_and_offline_names_each_missing_file(
    loopback: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MMMOS' three members: WavLM and MuQ from the (loopback) hub at their pinned revisions, M2D-CLAP from a zip
    write_hf_checkpoint(tmp_path / "wavlm", build_tiny(HF_FAMILIES["wavlm_base_plus"][0]), "wavlm_base_plus",
                        "safetensors")
    loopback.repos["microsoft/wavlm-base-plus"] = {p.name: p.read_bytes() for p in (tmp_path / "wavlm").iterdir()}
    write_muq(tmp_path / "muq", tiny_muq())
    loopback.repos["OpenMuQ/MuQ-large-msd-iter"] = {p.name: p.read_bytes() for p in (tmp_path / "muq").iterdir()}
    member = "m2d_clap_vit_base-80x1001p16x16-240128_AS-FT_enconly/weights_ep67it3124-0.48558.pth"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        weights = io.BytesIO()
        torch.save({"x": torch.zeros(2)}, weights)  # aqa download fetches, it does not load
        zf.writestr(member, weights.getvalue())
    loopback.files["m2d_clap.zip"] = archive.getvalue()
    # the built-in fusion.yaml with M2D's release URL pointed at the loopback file host
    configs = tmp_path / "configs" / "encoder"
    configs.mkdir(parents=True)
    fusion = (CONFIG_DIR / "encoder" / "fusion.yaml").read_text()
    official = re.search(r'checkpoint: "(https://github.com/nttcslab/m2d/releases/download/[^"#]+)#', fusion).group(1)
    (configs / "fusion.yaml").write_text(fusion.replace(official, f"{loopback.url}/files/m2d_clap.zip"))
    config_dir = [tmp_path / "configs", CONFIG_DIR]

    out = io.StringIO()
    assert download(["mmmos"], config_dir, out) == 0, out.getvalue()
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["fetched"] * 6, lines
    assert sum("microsoft/wavlm-base-plus@4c66d4806a42/" in line for line in lines) == 3  # config, preprocessor, weights
    assert sum("OpenMuQ/MuQ-large-msd-iter@0562a57814f6/" in line for line in lines) == 2  # config, weights
    assert any(line.endswith(str(tmp_path / "aqa" / "weights" / member)) for line in lines)
    seen = len(loopback.requests)

    out = io.StringIO()
    assert download(["mmmos"], config_dir, out) == 0
    assert [line.split()[0] for line in out.getvalue().splitlines()] == ["cached"] * 6
    assert len(loopback.requests) == seen

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("AQA_CACHE", str(tmp_path / "empty-aqa"))
    go_offline(monkeypatch)
    out = io.StringIO()
    assert download(["mmmos"], config_dir, out) == 1
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["missing"] * 5 and "aqa download mmmos" in lines[-1]
    assert len(loopback.requests) == seen


def test_every_published_variant_downloads_from_a_pinned_revision_or_an_official_url() -> None:
    from omegaconf import OmegaConf

    from aqa.config import encoder_config
    from aqa.encoders import ENCODERS, WEIGHTS
    from aqa.hub import is_hub_id, is_url

    assert set(WEIGHTS) == set(ENCODERS) - {"fusion"}
    routes = {name: OmegaConf.to_container(encoder_config(name)) for name in sorted(WEIGHTS)}
    routes["fusion m2d"] = next(m for m in encoder_config("fusion").encoders if m.name == "m2d_vit_base")
    for name, cfg in routes.items():
        checkpoint = cfg["checkpoint"]
        if is_hub_id(checkpoint):  # a commit hash, not a branch that can move
            assert re.fullmatch(r"[0-9a-f]{40}", cfg["revision"]), name
        else:
            assert is_url(checkpoint) and checkpoint.startswith("https://"), name
            assert cfg["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", cfg["sha256"]), name  # None: recorded on first use
    assert routes["beats_iter3_plus_as2m"]["sha256"] is not None
