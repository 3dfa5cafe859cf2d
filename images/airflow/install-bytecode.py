"""Install the bytecode an emulated build (another architecture) received from the build host's image.

Usage: python install-bytecode.py BYTECODE.tar

Importing every module Airflow loads (warm-bytecode.py) takes most of an hour under qemu. A .pyc does not depend on
the architecture, only on the source and the Python version, so `ap-airflow build` compiles, natively in the host
architecture's image of the same line and lock, the modules that image has bytecode for, as checked-hash .pyc files
(PEP 552: valid for a source with the same content, whatever its mtime), and puts them in the build context. Here
they are unpacked next to their sources; each one's source hash is compared with this image's source, and a module
whose source differs (files generated per architecture at build time) is compiled here instead. The result is the
same set of modules with bytecode as on the host's architecture.
"""

import importlib.util
import py_compile
import sys
import sysconfig
import tarfile
from pathlib import Path


def main(tar_path: str) -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    installed = recompiled = 0
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if member.isdir():
                continue
            name = Path(member.name)
            if not member.isfile() or name.is_absolute() or ".." in name.parts or name.suffix != ".pyc":
                sys.exit(f"install-bytecode: unexpected member {member.name!r}")
            data = tar.extractfile(member).read()
            # name: <dir>/__pycache__/<module>.<tag>.pyc; its source: <dir>/<module>.py
            source = site / name.parent.parent / (name.name.split(".")[0] + ".py")
            if data[:4] != importlib.util.MAGIC_NUMBER:
                sys.exit(f"install-bytecode: {member.name} is for another Python version")
            if not source.is_file():
                sys.exit(f"install-bytecode: {member.name} has no source {source}")
            if data[8:16] == importlib.util.source_hash(source.read_bytes()):
                target = site / name
                target.parent.mkdir(mode=0o755, exist_ok=True)
                target.write_bytes(data)
                target.chmod(0o644)
                installed += 1
            else:
                py_compile.compile(str(source), doraise=True)
                recompiled += 1
    print(f"install-bytecode: {installed} modules from the host's image, {recompiled} compiled here")
    if installed < 1000:
        sys.exit("install-bytecode: far fewer modules than Airflow has; the list is broken")


if __name__ == "__main__":
    main(sys.argv[1])
