"""README.md's commands cannot drift from the CLI (issue 24 item 7).

Every command line of every fenced ``bash`` block is in :data:`VERDICTS`: run by the slow test, or skipped with the
reason (a GPU, a download, the user's own data, minutes of training). A README command in neither fails the test.

Default layer (seconds): every ``aqa ...`` invocation (``.venv/bin/aqa``, ``srun aqa``, ``torchrun -m aqa.cli``,
and the ``aqa`` lines the ``make train|eval|sweep`` targets run) is parsed by the real parser, ``aqa prep NAME``'s
arguments by the recipe's own parser; ``aqa train`` composes and checks its config with the overrides (no data
checks), ``aqa sweep`` composes every trial, metric and baseline names are looked up, and every ``make TARGET``
exists in the Makefile. Slow layer (``make test-full``): the runnable commands run, in README order, in a scratch
folder whose ``.venv/bin`` is this interpreter's, offline, each exit code checked.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
MAKEFILE = REPO / "Makefile"

RUN = "run"
GPU = "needs a CUDA GPU"
DOWNLOAD = "downloads packages or published weights"
USER = "the user's own data or trained full-size runs"
LONG = "minutes of CPU work"
# Every command of README.md's bash blocks (continuation lines joined, comments dropped, spaces collapsed):
# RUN, or the reason the slow test does not run it. The slow test runs the RUN ones in README order.
VERDICTS: dict[str, str] = {
    "make install demo": RUN,
    "make data demos": LONG + ": make data (~4 min: HAAQI, ViSQOL labels) and five trainings",
    ".venv/bin/aqa score runs/deepaq_demo_tiny coded.wav --reference original.wav": RUN,
    "make test": "the test suite itself",
    "make install": "installs packages (the suite already runs in the installed .venv)",
    "python3 -m venv .venv": DOWNLOAD,
    ".venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu130": DOWNLOAD,
    '.venv/bin/python -c "import torch; print(torch.__version__, torch.cuda.is_available())"': GPU,
    'make train EXP=deepaq_lora_tiny ARGS="trainer.max_epochs=1"': RUN,
    ".venv/bin/aqa train deepaq_lora_tiny resume=true": LONG + ": the 11 epochs left of deepaq_lora_tiny's 12",
    ".venv/bin/aqa train deepaq_lora encoder.checkpoint=/models/MERT-v1-95M "
    "data.train_urls='shards/train-{00000..00099}.tar'": USER,
    ".venv/bin/aqa list": RUN,
    "mkdir -p my_configs/experiment": RUN,
    "cat > my_configs/experiment/my_deepaq.yaml <<'EOF'": RUN,
    "AQA_CONFIG_PATH=my_configs aqa train my_deepaq": USER + " (/data/my_codec; the default layer composes it)",
    "make demos": LONG + ": five trainings on make data's sets",
    ".venv/bin/aqa train jsqa_mos init_from=runs/jsqa_jnd encoder.checkpoint=/models/wavlm-base-plus": USER,
    ".venv/bin/aqa train jsqa_mos_scratch": USER + " (NISQA shards, full-size WavLM)",
    ".venv/bin/aqa train haaqi_net_mos init_from=runs/haaqi_net": USER,
    ".venv/bin/aqa metric visqol --ref ref.wav --deg deg.wav": RUN,
    ".venv/bin/aqa metric visqol,pesq --pairs pairs.csv --jobs 2": RUN,
    "make data-demo": RUN,
    "make data-deepaq-demo": RUN,
    ".venv/bin/aqa prep codec --src /path/to/music --out data/codec --jobs 8": USER,
    "make eval EXP=deepaq_lora_tiny": RUN,
    ".venv/bin/aqa calibrate runs/deepaq_lora_tiny --kind cubic": RUN,
    ".venv/bin/aqa ensemble runs/mmmos_a runs/mmmos_b runs/mmmos_c --out runs/mmmos_ensemble": USER,
    ".venv/bin/aqa ensemble runs/mmmos_* --out runs/mmmos_ensemble --select 12 --on val --on 'data/pam/val-*.tar'":
        USER,
    ".venv/bin/aqa sweep mmmos_tiny --dry-run": LONG + ": needs data/mos_demo (make data, ~1 min of ViSQOL)",
    ".venv/bin/aqa sweep mmmos_tiny": LONG + ": four trainings",
    ".venv/bin/aqa sweep mmmos_tiny --resume": LONG + ": four trainings",
    ".venv/bin/aqa sweep mmmos_table3 --out runs/t3 data.train_urls='data/import/train-*.tar'": USER,
    ".venv/bin/aqa sweep mmmos_table3 --out runs/t3 --resume": USER,
    'make sweep SWEEP=configs/sweep/mmmos_tiny.yaml ARGS="--resume"': LONG + ": four trainings",
    ".venv/bin/aqa ensemble --sweep runs/sweeps/mmmos_table3 --select 12 --on val --on 'data/pam/val-*.tar' "
    "--out runs/mmmos_ens": USER,
    ".venv/bin/aqa eval runs/mmmos_ens": USER,
    ".venv/bin/aqa eval runs/deepaq_lora_tiny runs/mmmos_tiny --test test.csv --baselines visqol,pesq,peaq "
    "--by condition --jobs 2 --out eval/mytest": USER + " (runs/mmmos_tiny needs make data; PEAQ takes minutes)",
    ".venv/bin/aqa eval --test test.csv --baselines visqol --out eval/visqol": RUN,
    ".venv/bin/aqa prep listening --src ../shared/data/clean/Kevin_MacLeod_-_Vibe_Ace.hq.ogg ... --codecs opus,mp3,aac "
    "--bitrates 16,32,64 --offset-s 5 --excerpt-s 5 --jobs 2 --out /tmp/codec_test": "an elided file list (...)",
    ".venv/bin/aqa prep import --src ~/data/ODAQ --csv-out ~/data/odaq.csv": USER,
    ".venv/bin/aqa eval runs/deepaq_lora --test ~/data/odaq.csv --baselines visqol,peaq,2f_model --by condition "
    "--jobs 8 --out eval/odaq": USER,
    ".venv/bin/aqa prep import --src ~/data/NISQA_Corpus --csv-out ~/data/nisqa.csv": USER,
    ".venv/bin/aqa eval runs/mmmos --test ~/data/nisqa.csv --baselines pesq,dnsmos --by split --out eval/nisqa": USER,
    ".venv/bin/aqa calibrate runs/deepaq_lora --test ~/data/odaq.csv --kind cubic": USER,
    "git clone https://github.com/BenjSta/bernoulli-var-speech-codec ~/data/codec_mushra": DOWNLOAD,
    ".venv/bin/aqa prep import --src ~/data/codec_mushra/mushra_results_dataset/ratings_formated.csv --format lists "
    "--trial signal --audio 'audio/{file}' --reference-condition Reference --csv-out ~/data/codec_mushra.csv": USER,
    ".venv/bin/aqa prep import --src ~/data/SiSEC08/SiSEC08_parsed.csv --format sebass "
    "--audio 'Signals/{Algorithm}/{Target}.wav' --reference-audio 'Signals/orig/{Target}.wav' "
    "--csv-out ~/data/sisec08.csv": USER,
    ".venv/bin/aqa prep import --src results.csv --format long --listener subject --score rating --trial item "
    "--system condition --audio 'audio/{item}/{condition}.wav' --reference-condition hidden_ref "
    "--mid-anchor anchor35 --csv-out test.csv": USER,
    ".venv/bin/aqa eval --test ~/data/codec_mushra.csv --baselines stoi,pesq --out eval/codec_mushra": USER,
    ".venv/bin/aqa score runs/mmmos_tiny my_song.wav more_audio/ list.lst": USER + " (runs/mmmos_tiny needs make data)",
    ".venv/bin/aqa score runs/deepaq_lora_tiny coded.wav --reference original.wav": RUN,
    ".venv/bin/aqa score models/deepaq --pairs pairs.csv --format csv --out scores.csv": USER,
    ".venv/bin/aqa score models/deepaq coded/ --ref-dir originals/": USER,
    ".venv/bin/aqa score runs/haaqi_net_tiny music.wav --audiogram 10,10,20,30,40,50,60,60 --window-s 10":
        USER + " (runs/haaqi_net_tiny needs make data)",
    ".venv/bin/aqa export runs/deepaq_lora models/deepaq": USER,
    ".venv/bin/aqa export runs/deepaq_lora models/deepaq_small --without-encoder": USER,
    ".venv/bin/aqa export ensembles/mmmos models/mmmos_ens": USER,
    'git clone "$AQA_GIT" aqa && cd aqa': DOWNLOAD,
    "export PATH=$PWD/.venv/bin:$PATH": "an installation step",
    "pip install torch --index-url https://download.pytorch.org/whl/cu130": DOWNLOAD,
    'pip install "aqa[metrics] @ git+$AQA_GIT"': DOWNLOAD,
    "python -c \"import torchaudio\" 2>/dev/null || rm -f \"$(python -c 'import sysconfig; "
    "print(sysconfig.get_paths()[\"purelib\"])')\"/torchaudio/lib/*.so": "an installation step",
    "sudo apt-get install -y --no-install-recommends ffmpeg": DOWNLOAD,
    "mkdir -p ~/aqa-work && cd ~/aqa-work": "an installation step (the user's home)",
    "aqa prep codec --src /path/to/music --out data/codec --store-rate 24000 --mono --jobs 32": USER,
    "aqa prep codec --src /path/to/music --out data/codec --store-rate 24000 --mono --jobs $SLURM_CPUS_PER_TASK "
    "--shard-id $SLURM_ARRAY_TASK_ID --num-shards $SLURM_ARRAY_TASK_COUNT": USER + " (a SLURM array job)",
    "aqa download deepaq_lora": DOWNLOAD,
    "aqa train deepaq_lora trainer.devices=1": GPU,
    "aqa train deepaq_lora trainer.devices=4 trainer.strategy=ddp": GPU,
    "srun aqa train deepaq_lora trainer.num_nodes=2 trainer.devices=8 trainer.strategy=ddp": GPU,
    "torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=HEAD:29500 -m aqa.cli train "
    "deepaq_lora trainer.num_nodes=2 trainer.devices=8 trainer.strategy=ddp": GPU,
    "aqa eval runs/deepaq_lora": USER,
    "aqa eval runs/deepaq_lora --reference mismatched": USER,
    "aqa export runs/deepaq_lora models/deepaq_lora": USER,
    "aqa score models/deepaq_lora coded.wav --reference original.wav": USER,
    ".venv/bin/aqa train deepaq_lora trainer=gpu encoder.checkpoint=/models/MERT-v1-95M": GPU,
    ".venv/bin/aqa train deepaq_lora_tiny trainer.precision=bf16-mixed trainer.max_epochs=1 "
    "run_dir=runs/tiny_bf16": RUN,
    ".venv/bin/aqa eval runs/deepaq_lora --device cuda --precision bf16": GPU,
    "make gpu-check": GPU,
    "make test-full": "the test suite itself",
    "make bench": LONG,
    "make lint": RUN,
}
# RUN commands that need a later README command's output first (make is idempotent: the later one then does nothing)
NEEDS = {'make train EXP=deepaq_lora_tiny ARGS="trainer.max_epochs=1"': "make data-demo"}
# Files the RUN commands name that the user is meant to bring: the slow test writes small ones (seconds of audio).
AUDIO_FIXTURES = ("coded.wav", "original.wav", "ref.wav", "deg.wav")


@dataclass(frozen=True)
class Command:
    """One README command: its text (the :data:`VERDICTS` key), its README line and its block's heredoc files."""

    text: str
    line: int
    heredocs: tuple[tuple[str, str], ...] = ()  # (path, content) written by this command


def bash_blocks(text: str) -> list[tuple[int, str]]:
    """(README line of its first body line, body) of each fenced ``bash`` block of a Markdown text."""
    out, body, start = [], None, 0
    for number, line in enumerate(text.splitlines(), 1):
        if body is None and line.strip() == "```bash":
            body, start = [], number + 1
        elif body is not None and line.strip() == "```":
            out.append((start, "\n".join(body)))
            body = None
        elif body is not None:
            body.append(line)
    return out


def _strip_comment(line: str) -> str:
    """``line`` without its shell comment (a ``#`` that starts a word outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def commands(start: int, body: str) -> list[Command]:
    """The commands of a bash block: continuation lines joined, comments (and ``#!``/``#SBATCH`` lines) dropped,
    a heredoc's lines kept as the file it writes, spaces collapsed."""
    lines, out, i = body.splitlines(), [], 0
    while i < len(lines):
        number, parts = start + i, []
        while True:
            part = _strip_comment(lines[i]).rstrip()
            i += 1
            if part.endswith("\\") and i < len(lines):
                parts.append(part[:-1])
                continue
            parts.append(part)
            break
        text = " ".join(" ".join(parts).split())
        if not text:
            continue
        heredocs = []
        here = re.search(r">\s*(\S+)\s*<<\s*'?(\w+)'?", text)
        if here:
            path, end = here.groups()
            content = []
            while i < len(lines) and lines[i].strip() != end:
                content.append(lines[i])
                i += 1
            i += 1
            heredocs.append((path, "\n".join(content) + "\n"))
        out.append(Command(text, number, tuple(heredocs)))
    return out


def readme_commands(text: str) -> list[Command]:
    return [c for start, body in bash_blocks(text) for c in commands(start, body)]


def simple_commands(text: str) -> list[list[str]]:
    """The words of each simple command of a shell line (split at ``&&``, ``||``, ``;``, ``|``; redirections and
    leading ``NAME=value`` assignments dropped, assignments kept as a first ``{NAME: value}`` word)."""
    text = re.sub(r"(?<![\w'\"])\d?(>>?|<)(&\d|\s*[^\s'\"<]+)", " ", text)  # redirections, not heredocs
    lex = shlex.shlex(text, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    out: list[list[str]] = [[]]
    tokens = list(lex)
    skip = False
    for tok in tokens:
        if skip:
            skip = False
            continue
        if tok in ("&&", "||", ";", "|", "&"):
            out.append([])
        elif tok in ("<<", "<<<"):
            skip = True
        else:
            out[-1].append(tok)
    return [words for words in out if words]


def aqa_argv(words: list[str]) -> tuple[dict[str, str], list[str]] | None:
    """(environment assignments, argv after ``aqa``) when ``words`` invoke aqa, else None."""
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        key, _, value = words[0].partition("=")
        env[key], words = value, words[1:]
    if words and words[0] == "srun":
        words = words[1:]
    words = [re.sub(r"\$\{?\w+\}?", "1", w) for w in words]  # a shell variable: a stand-in value (--jobs $N)
    if words and words[0] in ("aqa", ".venv/bin/aqa"):
        return env, words[1:]
    if "-m" in words and words[words.index("-m") + 1 : words.index("-m") + 2] == ["aqa.cli"]:
        return env, words[words.index("-m") + 2 :]
    return None


def make_rules(makefile: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The Makefile's targets -> their recipe lines, and its ``VAR ?= value`` / ``VAR := value`` defaults."""
    rules: dict[str, list[str]] = {}
    defaults: dict[str, str] = {}
    current: list[str] | None = None
    for line in makefile.splitlines():
        if line.startswith("\t") and current is not None:
            current.append(line.strip())
            continue
        var = re.match(r"^([A-Z_]+)\s*[?:]?=\s*(.*)$", line)
        rule = re.match(r"^([\w./-]+(?:\s+[\w./-]+)*)\s*:(?!=)", line)
        if var:
            defaults[var.group(1)] = var.group(2).strip()
            current = None
        elif rule:
            current = []
            for target in rule.group(1).split():
                rules[target] = current
        elif not line.startswith("\t"):
            current = None
    return rules, defaults


def make_aqa_lines(words: list[str], rules: dict[str, list[str]], defaults: dict[str, str]) -> list[list[str]]:
    """The aqa argvs the ``make TARGET... VAR=value...`` command ``words`` runs directly (recipe lines
    ``$(BIN)/aqa ...`` whose variables are all known; other recipes are left out)."""
    values = {**defaults, **dict(w.split("=", 1) for w in words[1:] if "=" in w)}
    out = []
    for target in (w for w in words[1:] if "=" not in w and not w.startswith("-")):
        for recipe in rules.get(target, []):
            recipe = recipe.removeprefix("time ")
            if not recipe.startswith("$(BIN)/aqa "):
                continue
            line = re.sub(r"\$\((\w+)\)", lambda m: values.get(m.group(1), m.group(0)), recipe[len("$(BIN)/aqa "):])
            if "$" not in line:
                out.append(shlex.split(line))
    return out


def check_aqa(argv: list[str], env: dict[str, str], config_dir: Path | None = None) -> str | None:
    """Why the aqa command ``argv`` would be refused before it reads any data, or None. Parses with the real
    parser (and a prep recipe's own), composes ``train``'s config and every ``sweep`` trial (no data checks) and
    looks up metric and baseline names."""
    import importlib

    from aqa.cli import build_parser, parse_args
    from aqa.config import check_values, compose, set_config_dirs

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parse_args(build_parser(), argv)
            if args.command == "prep":
                from data_prep import RECIPES

                importlib.import_module(RECIPES[args.recipe]).build_parser().parse_args(args.args)
    except SystemExit:
        return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else "usage error"
    dirs = [*args.config_dir, *getattr(args, "sub_config_dir", [])]
    if "AQA_CONFIG_PATH" in env:
        dirs = [*dirs, *(str(config_dir / d if config_dir else d) for d in env["AQA_CONFIG_PATH"].split(":"))]
    set_config_dirs(dirs)
    try:
        if args.command == "train":
            check_values(compose(args.experiment, args.overrides), data=False)
        elif args.command == "sweep":
            from aqa.sweep import default_out, expand, load_sweep
            from aqa.sweep.trials import compose_trial

            # the first trial with the command's overrides (tests/test_sweep.py composes every trial of every
            # configs/sweep file; composing all of mmmos_table3's here would take seconds)
            spec = load_sweep(args.sweep)
            check_values(compose_trial(expand(spec, args.overrides)[0], args.out or default_out(spec)), data=False)
        elif args.command == "metric":
            from aqa.metrics import parse_names

            parse_names(args.name)
        elif args.command == "download":
            from aqa.download import encoders_needed

            for target in args.targets:
                list(encoders_needed(target))
        elif args.command == "eval" and args.baselines:
            from aqa.eval.listening import split_baselines

            split_baselines(args.baselines)
    except Exception as exc:  # noqa: BLE001 - any refusal is the finding
        return f"{type(exc).__name__}: {exc}"
    finally:
        set_config_dirs([])
    return None


def problems(text: str, makefile: str, scratch: Path) -> list[str]:
    """Every README command that no longer matches the CLI or the Makefile, as 'line N: command: why'."""
    rules, defaults = make_rules(makefile)
    out = []
    for cmd in readme_commands(text):
        for path, content in cmd.heredocs:  # a block's own config files, for the commands after it
            (scratch / path).parent.mkdir(parents=True, exist_ok=True)
            (scratch / path).write_text(content)
        for words in simple_commands(cmd.text):
            found = aqa_argv(words)
            argvs = [found] if found else []
            if words[0] == "make":
                missing = [w for w in words[1:] if "=" not in w and not w.startswith("-") and w not in rules]
                if missing:
                    out.append(f"line {cmd.line}: {cmd.text}: no Makefile target {missing}")
                argvs = [({}, a) for a in make_aqa_lines(words, rules, defaults)]
            for env, argv in argvs:
                why = check_aqa(argv, env, scratch)
                if why:
                    out.append(f"line {cmd.line}: {cmd.text}: {why}")
    return out


def test_every_readme_command_has_a_verdict():
    found = [c.text for c in readme_commands(README.read_text(encoding="utf-8"))]
    unlisted = [c for c in found if c not in VERDICTS]
    assert not unlisted, "README commands missing from tests/test_readme.py VERDICTS (RUN or a skip reason):\n" + (
        "\n".join(unlisted)
    )
    stale = [c for c in VERDICTS if c not in found]
    assert not stale, f"VERDICTS entries no longer in README.md: {stale}"


def test_readme_commands_parse_with_the_cli_and_makefile(tmp_path):
    bad = problems(README.read_text(encoding="utf-8"), MAKEFILE.read_text(encoding="utf-8"), tmp_path)
    assert not bad, "README commands the CLI or the Makefile refuse:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("command", "expect"),
    [
        (".venv/bin/aqa score runs/x a.wav --refrence b.wav", "unrecognized arguments: --refrence"),
        (".venv/bin/aqa prep codec --src x --out y --store-hz 24000", "--store-hz"),
        (".venv/bin/aqa train deepaq_lora_tiny trainer.max_epoch=1", "max_epoch"),
        (".venv/bin/aqa train deepaq_lora_tinny", "deepaq_lora_tinny"),
        (".venv/bin/aqa sweep mmmos_tiny --out x data.train_url=y", "train_url"),
        (".venv/bin/aqa metric visqol,pseq --ref a.wav --deg b.wav", "pseq"),
        (".venv/bin/aqa eval --test t.csv --baselines visqool --out o", "visqool"),
        ('make train EXP=deepaq_lora_tiny ARGS="trainer.max_epochz=1"', "max_epochz"),
        ("make data-demos", "no Makefile target ['data-demos']"),
        ("aqa download deepaq_lora_big", "deepaq_lora_big"),
    ],
)
def test_a_drifted_readme_command_is_reported(command, expect, tmp_path):
    text = f"Some text.\n\n```bash\n.venv/bin/aqa list\n{command}   # planted\n```\n"
    bad = problems(text, MAKEFILE.read_text(encoding="utf-8"), tmp_path)
    assert len(bad) == 1 and bad[0].startswith("line 5: ") and expect in bad[0], bad


def test_commands_join_continuations_and_keep_heredocs():
    body = "a \\\n  --b c   # note\n# only a comment\ncat > d/e.yaml <<'EOF'\nx: 1\nEOF\nf # g"
    cmds = commands(10, body)
    assert [c.text for c in cmds] == ["a --b c", "cat > d/e.yaml <<'EOF'", "f"]
    assert [c.line for c in cmds] == [10, 13, 16]
    assert cmds[1].heredocs == (("d/e.yaml", "x: 1\n"),)
    assert simple_commands("A=b aqa x 'y z' 2>/dev/null && make t") == [["A=b", "aqa", "x", "y z"], ["make", "t"]]


def _write_fixtures(work: Path) -> None:
    """The user's files the RUN commands name: 3 s clips at 16 kHz, a pairs CSV and a listening test."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(48000) / 16000
    clean = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    for name in AUDIO_FIXTURES:
        noisy = name in ("coded.wav", "deg.wav")
        sf.write(work / name, (clean + (0.05 * rng.standard_normal(t.size) if noisy else 0)).astype("float32"), 16000)
    (work / "pairs.csv").write_text("reference,degraded\nref.wav,deg.wav\noriginal.wav,coded.wav\n")
    rows = ["degraded,reference,score"]
    for i, level in enumerate((0.02, 0.05, 0.1, 0.2, 0.4)):
        sf.write(work / f"t{i}.wav", (clean + level * rng.standard_normal(t.size)).astype("float32"), 16000)
        rows.append(f"t{i}.wav,ref.wav,{5 - i * 0.8:.1f}")
    (work / "test.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.slow
def test_runnable_readme_commands_run(tmp_path):
    """Runs every RUN command in README order in a scratch copy of the repository's top level (``.venv/bin`` is
    this interpreter's). Measured on 2 shared cores (load ~3): 345-525 s, of which make demo 105-220 s, make data-demo
    ~90 s, the deepaq_lora_tiny trainings 38 s (fp32) and 72 s (bf16-mixed), calibrate ~30 s, the rest 5-17 s each."""
    work = tmp_path / "aqa"
    work.mkdir()
    (tmp_path / "shared").symlink_to(REPO.parent / "shared")  # the Makefile's SHARED ?= ../shared/data
    for name in ("Makefile", "pyproject.toml", "setup.py", "constraints.txt"):
        shutil.copy2(REPO / name, work / name)
    for name in ("aqa", "data_prep", "tests", "configs"):
        (work / name).symlink_to(REPO / name)
    (work / ".venv").mkdir()
    (work / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    (work / ".venv" / ".installed").touch()  # newer than the copies: `make install` has nothing to do
    _write_fixtures(work)
    # relative shard paths are read from $AQA_DATA (else the checkout); metric results cached in the scratch folder
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "AQA_DATA": str(work), "AQA_METRIC_CACHE": str(tmp_path / "cache")}
    for cmd in readme_commands(README.read_text(encoding="utf-8")):
        if VERDICTS.get(cmd.text) != RUN or cmd.text.startswith("cat >"):
            for path, content in cmd.heredocs:
                (work / path).write_text(content)
            continue
        for text in (NEEDS[cmd.text], cmd.text) if cmd.text in NEEDS else (cmd.text,):
            start = time.monotonic()
            done = subprocess.run(["bash", "-c", text], cwd=work, env=env, capture_output=True, text=True)
            print(f"{time.monotonic() - start:6.1f} s  {text}", flush=True)
            assert done.returncode == 0, f"README line {cmd.line}: {text} -> exit {done.returncode}\n" + (
                done.stdout[-3000:] + done.stderr[-3000:]
            )
