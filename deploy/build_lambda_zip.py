"""Build the Lambda deployment zip: `lambda_trigger` plus its dependencies, boto3 excluded.

Dependencies are copied from the distributions installed in this environment (the versions
the tests ran against), so the build needs no network. Both are pure Python, so the zip
works on either Lambda architecture; boto3 is left out because the Python runtime ships it.
Bytecode for this interpreter is included (unchecked-hash .pyc, valid whatever the unpacked
files' times): Lambda's /var/task is read-only, so without it every cold start compiles again.
Deploy on the runtime of the Python that built the zip (the template names python3.11).
"""

from __future__ import annotations

import argparse
import importlib.util
import py_compile
import sys
import tempfile
import zipfile
from importlib.metadata import distribution
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "lambda_trigger"
# distribution name -> the top-level packages of it the handler needs
DEPENDENCIES = {"pyjwt": ("jwt",), "slack_sdk": ("slack_sdk",)}
# A fixed timestamp makes the zip byte-for-byte reproducible, so its hash only moves with code.
EPOCH = (2020, 1, 1, 0, 0, 0)


def build(output: Path) -> Path:
    """Write the zip to `output` and return it."""
    files: dict[str, Path] = {}
    for source in sorted((REPO / PACKAGE).rglob("*.py")):
        files[source.relative_to(REPO).as_posix()] = source
    for name, packages in DEPENDENCIES.items():
        dist = distribution(name)
        for entry in dist.files or ():
            path = PurePosixPath(entry)
            top = path.parts[0]
            if (top in packages or top.endswith(".dist-info")) and _wanted(path):
                files[path.as_posix()] = Path(str(dist.locate_file(entry)))
    contents = {name: source.read_bytes() for name, source in files.items()}
    for name, source in files.items():
        if name.endswith(".py"):
            contents[importlib.util.cache_from_source(name)] = _bytecode(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in sorted(contents):
            info = zipfile.ZipInfo(name, EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, contents[name])
    return output


def _bytecode(source: Path) -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "module.pyc"
        py_compile.compile(
            str(source),
            cfile=str(target),
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        return target.read_bytes()


def _wanted(path: PurePosixPath) -> bool:
    # Bytecode is rebuilt by the runtime; RECORD and INSTALLER describe this venv, not the zip.
    return (
        "__pycache__" not in path.parts
        and path.suffix != ".pyc"
        and path.name not in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")
    )


def main(argv: list[str] | None = None) -> int:
    """Build the zip and print its path, file count and size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "dist" / "lambda_trigger.zip")
    output = build(parser.parse_args(argv).output)
    with zipfile.ZipFile(output) as archive:
        count = len(archive.namelist())
    size = output.stat().st_size
    print(f"{output}: {count} files, {size} bytes ({size / 1024 / 1024:.2f} MiB)")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    print(f"bytecode for {sys.implementation.cache_tag}: deploy it on the {version} Lambda runtime")
    return 0


if __name__ == "__main__":
    sys.exit(main())
