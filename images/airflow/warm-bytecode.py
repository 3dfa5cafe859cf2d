"""Write .pyc files for the code Airflow actually loads, and only for it.

Compiling every module of the venv doubles its size (about 410 MB of .pyc for 400 MB of sources), mostly for code
no Airflow process ever imports: old API versions of multi-version SDKs (google-ads v16/v17, azure-mgmt-*
api-versions), generated clients no provider uses. Without a .pyc next to it a module is compiled in memory on
every import (the image is read-only for astro), so what *is* loaded must keep its bytecode.

This imports, as root at build time, every module of the `airflow` package (core, CLI, webserver, executors and
every installed provider's hooks, operators, sensors, triggers and transfers) and the packages Airflow loads
lazily at start (Celery workers, gunicorn, dialects); Python writes the .pyc of everything those imports pull in.
A module imported only by a DAG directly, and nowhere by Airflow, compiles on import like any source-only module.
"""

import importlib
import importlib.util
import os
import sys
import warnings

warnings.simplefilter("ignore")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

# Imported whole: loaded lazily by Airflow's components, so not reached by importing airflow.* alone.
WHOLE = [
    "celery",
    "kombu",
    "billiard",
    "gunicorn",  # 2.x webserver
    "uvicorn",  # 3.x api-server
    "fastapi",
    "starlette",
    "flask_appbuilder",
    "sqlalchemy.dialects",
    "psycopg2",
    "MySQLdb",
    "redis",
    "alembic",
]
SKIP_DIRS = {"__pycache__", "example_dags", "tests", "_vendor"}


def module_names(package_name: str):
    """Every module of a package by its files: pkgutil skips namespace packages such as airflow.providers."""
    try:
        spec = importlib.util.find_spec(package_name)
        locations = spec.submodule_search_locations if spec else None
    except ValueError:  # already imported with __spec__ None (celery and kombu swap in lazy modules)
        locations = getattr(sys.modules[package_name], "__path__", None)
    if not locations:
        yield package_name
        return
    for location in list(locations):
        for root, dirs, files in os.walk(location):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and d.isidentifier())
            rel = os.path.relpath(root, location)
            prefix = package_name if rel == "." else package_name + "." + rel.replace(os.sep, ".")
            for f in sorted(files):
                if f.endswith(".py") and f[:-3].isidentifier() and f != "__main__.py":
                    yield prefix if f == "__init__.py" else f"{prefix}.{f[:-3]}"


def walk(package_name: str) -> tuple[int, int]:
    ok = failed = 0
    for name in module_names(package_name):
        try:
            importlib.import_module(name)
            ok += 1
        except BaseException:  # optional dependencies missing, SystemExit: the module is simply not warmed
            failed += 1
    return ok, failed


def main() -> None:
    total_ok = total_failed = 0
    for name in ["airflow", *WHOLE]:
        ok, failed = walk(name)
        total_ok += ok
        total_failed += failed
    # Straight to fd 1: an imported module may have replaced or closed sys.stdout.
    os.write(1, f"warm-bytecode: imported {total_ok} modules ({total_failed} not importable), "
                f"{len(sys.modules)} loaded in all\n".encode())
    # Imports may leave threads or atexit hooks behind; nothing here needs a clean interpreter shutdown.
    # Far fewer modules than Airflow has means the walk itself broke: fail the build rather than ship no .pyc.
    os._exit(0 if total_ok > 1000 else 1)


if __name__ == "__main__":
    main()
