"""The repository stands alone: nothing it tracks reaches for a path outside it.

The rule, precisely. Every file `git ls-files` lists is checked, read as UTF-8; a file holding a
NUL byte or bytes that are not UTF-8 is binary and skipped. In Markdown only the fenced code
blocks are checked (tests run README and runbook blocks verbatim); the prose may say where the
team keeps its reference copies. This file is skipped, as it spells out what it looks for.
A checked file reaches out, and fails the test, where it:

1. names the team's reference folder beside the repository (the folder `TEAM` below, reached
   with `../`, or its `events`, `DESIGN.md` or `STYLE.md`), or an absolute path under `/work/`;
2. holds a relative path climbing with `../` that, resolved against the file's own directory
   (as Make, shell scripts after `cd "$(dirname "$0")"`, YAML `CodeUri` and Markdown links
   read it), lands outside the repository;
3. (Python) climbs from `Path(__file__)` with `.parents[N]` or `.parent` above the repository
   root, or takes `.parent` of a name for the root (`REPO.parent`, `ROOT.parent`).

A second test clones the repository (its committed state) into an empty directory and collects
every test there, as a new user's `make test` would.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[1]
SELF = PurePosixPath("tests/test_standalone.py")
#: The team's reference folder, spelled in two halves so that no line here names it whole.
TEAM = "sha" + "red"

NAMED = re.compile(r"\.\./+shared\b|\bshared/(?:events|DESIGN\.md|STYLE\.md)\b|(?<![\w.])/work/")
CLIMBING = re.compile(r"(?<![\w.])((?:\.\./)+)[\w.-]")
FILE_PARENTS = re.compile(r"Path\(__file__\)(?:\.resolve\(\))?(?:\.parents\[(\d+)\]|((?:\.parent\b)+))")
ROOT_PARENT = re.compile(r"\b\w*(?:REPO|ROOT)\.parent\b")
FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1", re.MULTILINE | re.DOTALL)


def way_out(path: PurePosixPath, text: str) -> list[str]:
    """Each reference in `text` (the file at `path`, relative to the root) to a path outside."""
    if path.suffix == ".md":
        text = "\n".join(block.group(0) for block in FENCE.finditer(text))
    found = [f"names {m.group(0)!r}" for m in NAMED.finditer(text)]
    depth = len(path.parts) - 1  # directories between the root and the file
    for match in CLIMBING.finditer(text):
        if match.group(1).count("../") > depth:
            found.append(f"climbs out with {match.group(0)!r}")
    for match in FILE_PARENTS.finditer(text):
        levels = int(match.group(1)) if match.group(1) else match.group(2).count(".parent") - 1
        if levels > depth:
            found.append(f"climbs out with {match.group(0)!r}")
    found += [f"takes the parent of the root: {m.group(0)!r}" for m in ROOT_PARENT.finditer(text)]
    return found


def tracked_text_files() -> dict[PurePosixPath, str]:
    """Every tracked file that is text, by its path relative to the root."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    files = {}
    for name in filter(None, listed.split("\0")):
        path = REPO / name
        if not path.is_file():  # deleted in the working tree, not yet committed
            continue
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if "\0" not in text:
            files[PurePosixPath(name)] = text
    return files


@pytest.fixture(scope="module")
def tracked() -> dict[PurePosixPath, str]:
    """The repository's tracked text files (skips when this is no git work tree, e.g. a tarball)."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git work tree: nothing tells which files are tracked")
    return tracked_text_files()


def test_it_finds_no_tracked_file_reaching_out_of_the_repository(tracked: dict[PurePosixPath, str]) -> None:
    assert len(tracked) > 50 and PurePosixPath("Makefile") in tracked
    reaching = {
        str(path): refs for path, text in tracked.items() if path != SELF and (refs := way_out(path, text))
    }
    assert reaching == {}


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("tests/lambda_support/lambda_env.py", f'EVENTS = REPO.parent / "{TEAM}" / "events"'),
        ("tests/x.py", f'load(Path("../{TEAM}/events/daily.json"))'),
        ("Makefile", "events:\n\tcp -r ../events service/demo_events"),
        ("deploy/template.yaml", "CodeUri: ../../dist/lambda_trigger.zip"),
        ("tests/support/x.py", "ROOT = Path(__file__).resolve().parents[3]"),
        ("tests/x.py", "HERE = Path(__file__).parent.parent.parent"),
        (".ci/run", "cd /work/main && make test"),
        ("README.md", f"Prose.\n\n```sh\nls {TEAM}/events\n```\n"),
    ],
)
def test_it_flags_each_way_out(path: str, text: str) -> None:
    assert way_out(PurePosixPath(path), text)


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("tests/lambda_support/lambda_env.py", "REPO = Path(__file__).resolve().parents[2]"),
        ("deploy/template.yaml", "CodeUri: ../dist/lambda_trigger.zip"),
        ("deploy/README.md", "read the alarms: [`docs/runbook.md`](../docs/runbook.md)."),
        ("README.md", f"The reference copies in {TEAM}/events are not read; the repository keeps its own."),
        ("tests/test_lambda_events.py", '{"job": "../admin", "slot": "2026-11-22T15:00:00Z"}'),
        (".ci/run", 'cd "$(dirname "$0")/.."'),
    ],
)
def test_it_lets_paths_inside_the_repository_be(path: str, text: str) -> None:
    assert way_out(PurePosixPath(path), text) == []


def test_it_collects_every_test_from_a_clone_with_nothing_beside_it(tmp_path: Path) -> None:
    # A new user's checkout: the committed state, in a directory with no siblings.
    if not (REPO / ".git").exists():
        pytest.skip("not a git work tree: there is nothing to clone")
    clone = tmp_path / "batch-trigger"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=clone,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(clone), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " tests collected" in done.stdout
