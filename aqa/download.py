"""``aqa download EXPERIMENT|ENCODER ...``: pre-fetch the published weights a run will load.

For clusters whose login node has internet and whose compute nodes do not: run it on the login node (the
caches, ``HF_HOME`` and ``AQA_CACHE``, on a shared file system), then train with ``HF_HUB_OFFLINE=1``. An
experiment needs its encoder (a fusion: every member) and, when it distils, its teacher run's encoder.
Each file prints one line, ``fetched`` / ``cached`` / ``local`` with its path; offline, each missing file
prints one ``missing`` line and the command exits 1.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from omegaconf import DictConfig, OmegaConf

from aqa.config import ConfigDirs, ConfigError, available, compose, encoder_config, find_config, load_config


def encoders_needed(target: str, config_dir: ConfigDirs = None) -> Iterator[tuple[str, DictConfig | str]]:
    """(label, complete encoder config) for each encoder ``target`` loads, or (label, note) when one cannot
    be known yet (a teacher run not trained). ``target`` is an experiment or an encoder config name."""
    if find_config("experiment", target, config_dir) is not None:
        cfg = compose(target, config_dir=config_dir)
        yield target, cfg.encoder
        teacher = (cfg.get("distill") or {}).get("teacher")
        if teacher:
            saved = Path(str(teacher)) / "config.yaml"
            if saved.is_file():
                yield f"{target} teacher {teacher}", load_config(saved).encoder
            else:
                yield f"{target} teacher {teacher}", (
                    f"not trained yet ({saved} missing); its encoder is fetched with its own experiment"
                )
    elif find_config("encoder", target, config_dir) is not None:
        yield target, encoder_config(target, config_dir)
    else:
        raise ConfigError(
            f"{target!r} is no experiment or encoder; experiments: {' '.join(available('experiment', config_dir))}; "
            f"encoders: {' '.join(available('encoder', config_dir))}"
        )


def _key(cfg: DictConfig) -> str:
    # one fetch per distinct checkpoint (a teacher usually loads the student's encoder)
    container: Any = OmegaConf.to_container(cfg, resolve=True)
    if container.get("name") == "fusion":
        return repr([_key(OmegaConf.create(m)) for m in container.get("encoders") or []])
    return repr((container.get("name"), container.get("checkpoint"), container.get("revision"), container.get("sha256")))


def _printer(name: str, out: TextIO):  # noqa: ANN202
    def report(status: str, source: str, path: Path) -> None:
        print(f"{status:<8} {name}: {source} -> {path}", file=out, flush=True)

    return report


def download(targets: Sequence[str], config_dir: ConfigDirs = None, out: TextIO | None = None) -> int:
    """Fetch (or find cached) every published checkpoint the ``targets`` need; one line per file on ``out``.

    Returns:
        0 when every file is there, 1 when some could not be had (offline or unreachable: one ``missing``
        line per file, then the hint to run this command where there is internet).
    """
    from aqa.encoders import fetch_weights
    from aqa.hub import WeightsUnavailable

    out = out or sys.stdout
    seen: set[str] = set()
    failed = 0
    for target in targets:
        for label, cfg in encoders_needed(target, config_dir):
            if isinstance(cfg, str):
                print(f"note     {label}: {cfg}", file=out)
                continue
            if _key(cfg) in seen:
                continue
            seen.add(_key(cfg))

            members = list(cfg.encoders) if cfg.name == "fusion" else [cfg]
            for member in members:
                name = f"{label} ({member.name})" if cfg.name == "fusion" else label
                if member.get("checkpoint") is None:
                    print(f"random   {name}: checkpoint null (random weights, nothing to fetch)", file=out)
                    continue
                try:
                    fetch_weights(member, _printer(name, out))
                except WeightsUnavailable as err:
                    failed += 1
                    for line in err.missing:
                        print(f"missing  {name}: {line}", file=out)
    if failed:
        print(f"{failed} checkpoint(s) missing: run `aqa download {' '.join(targets)}` on a machine with internet "
              "(the same HF_HOME / AQA_CACHE)", file=out)
    return 1 if failed else 0


__all__ = ["download", "encoders_needed"]
