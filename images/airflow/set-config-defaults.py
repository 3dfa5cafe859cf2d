"""Make the image's Airflow settings part of Airflow's own packaged defaults.

Usage: python set-config-defaults.py [--no-read-back] SECTION.KEY=VALUE ...

Airflow 2.7+ has no default_airflow.cfg to sed: defaults come from config_templates/config.yml (core options) and
from each provider's get_provider_info() "config" (e.g. [fab], [kubernetes_executor]); an option defined in neither
falls back to config_templates/pre_2_7_defaults.cfg. Each setting is written where Airflow reads that option's
default, so a user's airflow.cfg, AIRFLOW__SECTION__KEY env vars, _cmd and secrets still take precedence (env vars
in the image would not let airflow.cfg override them). Every edit is read back and the result is checked through
Airflow's own config parser; any surprise fails the build.
"""

import ast
import configparser
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import py_compile
import re
import subprocess
import sys
import tempfile

import yaml


def airflow_dir() -> pathlib.Path:
    # find_spec on a top-level package does not import it (importing airflow would initialise its config).
    spec = importlib.util.find_spec("airflow")
    return pathlib.Path(spec.origin).parent


def set_in_config_yml(path: pathlib.Path, section: str, key: str, value: str) -> bool:
    text = path.read_text()
    if key not in (yaml.safe_load(text).get(section) or {}).get("options", {}):
        return False
    lines = text.splitlines(keepends=True)
    in_section = in_option = False
    for i, line in enumerate(lines):
        if re.match(r"^\S", line):
            in_section = line.rstrip() == f"{section}:"
            in_option = False
        elif in_section and re.match(r"^    \S", line):
            in_option = line.rstrip() == f"    {key}:"
        elif in_section and in_option and line.startswith("      default:"):
            lines[i] = f"      default: {json.dumps(value)}\n"
            path.write_text("".join(lines))
            got = yaml.safe_load(path.read_text())[section]["options"][key]["default"]
            if str(got) != value:
                sys.exit(f"config.yml: {section}.{key} reads back as {got!r}, not {value!r}")
            return True
    sys.exit(f"config.yml: found {section}.{key} but not its default line")


def provider_info_files():
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == "apache_airflow_provider":
                module = ep.value.split(":")[0]
                yield pathlib.Path(dist.locate_file(module.replace(".", "/") + ".py"))


def provider_info(path: pathlib.Path) -> dict:
    # get_provider_info() is one `return {...}` literal: evaluate it without importing Airflow.
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Dict):
            return ast.literal_eval(node.value)
    return {}


def set_in_provider(section: str, key: str, value: str) -> bool:
    for path in provider_info_files():
        option = provider_info(path).get("config", {}).get(section, {}).get("options", {}).get(key)
        if option is None:
            continue
        text = path.read_text()
        start = text.index(f'"{section}": {{')
        at = text.index(f'"{key}": {{', start)
        m = re.compile(r'"default": ("(?:[^"\\]|\\.)*"|None)').search(text, at)
        text = text[: m.start()] + f'"default": {json.dumps(value)}' + text[m.end() :]
        path.write_text(text)
        got = provider_info(path)["config"][section]["options"][key]["default"]
        if got != value:
            sys.exit(f"{path}: {section}.{key} reads back as {got!r}, not {value!r}")
        py_compile.compile(str(path), doraise=True)
        return True
    return False


def set_in_fallback(path: pathlib.Path, section: str, key: str, value: str) -> None:
    parser = configparser.ConfigParser()
    parser.read(path)
    text = path.read_text()
    if parser.has_section(section):
        if parser.has_option(section, key):
            text = re.sub(
                rf"(?m)^(\[{re.escape(section)}\][^\[]*?)^{re.escape(key)}\s*=.*$",
                lambda m: f"{m.group(1)}{key} = {value}",
                text,
            )
        else:
            text = text.replace(f"[{section}]\n", f"[{section}]\n{key} = {value}\n", 1)
    else:
        text = text.rstrip("\n") + f"\n\n[{section}]\n{key} = {value}\n"
    path.write_text(text)
    check = configparser.ConfigParser()
    check.read(path)
    if check.get(section, key) != value:
        sys.exit(f"{path}: {section}.{key} reads back as {check.get(section, key)!r}, not {value!r}")


def main(argv):
    # --no-read-back: only the edits' own read-back (no Airflow start-up); `ap-airflow verify` reads the settings
    # through Airflow in the finished image (emulated builds, where starting Airflow costs minutes).
    read_back = "--no-read-back" not in argv
    settings = []
    for arg in (a for a in argv if a != "--no-read-back"):
        name, sep, value = arg.partition("=")
        section, dot, key = name.partition(".")
        if not (sep and dot and section and key):
            sys.exit(f"expected SECTION.KEY=VALUE, got {arg!r}")
        settings.append((section.lower(), key.lower(), value))

    templates = airflow_dir() / "config_templates"
    for section, key, value in settings:
        if set_in_config_yml(templates / "config.yml", section, key, value):
            where = "config.yml"
        elif set_in_provider(section, key, value):
            where = "provider config"
        elif (templates / "pre_2_7_defaults.cfg").exists():
            set_in_fallback(templates / "pre_2_7_defaults.cfg", section, key, value)
        else:  # Airflow 3 has no fallback file: an option nobody defines is a mistake in releases.toml
            sys.exit(f"{section}.{key}: no such option in Airflow's or any installed provider's config")
            where = "pre_2_7_defaults.cfg"
        print(f"default {section}.{key} = {value} ({where})")

    if not read_back:
        return
    # Proof through Airflow itself, in a scratch AIRFLOW_HOME (Airflow writes an airflow.cfg on first use): one
    # process reads every setting as `airflow config get-value` does (provider sections join the defaults first).
    # One Airflow start-up instead of one per setting: under emulation (arm64 images) each costs a minute.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    with tempfile.TemporaryDirectory() as home:
        env["AIRFLOW_HOME"] = home
        got = subprocess.run(
            [sys.executable, "-c", READ_BACK, json.dumps([[s, k] for s, k, _ in settings])],
            env=env, capture_output=True, text=True, check=False,
        )
        if got.returncode != 0:
            sys.exit(f"reading the settings through Airflow failed: {got.stderr.strip()[-500:]}")
        for (section, key, value), read in zip(settings, json.loads(got.stdout.strip().splitlines()[-1])):
            if read != value:
                sys.exit(f"Airflow reads {section}.{key} as {read!r}, not {value!r}")


READ_BACK = """
import json, sys, warnings
warnings.simplefilter("ignore")
from airflow.configuration import conf
from airflow.providers_manager import ProvidersManager
ProvidersManager().initialize_providers_configuration()
print(json.dumps([conf.get(s, k) for s, k in json.loads(sys.argv[1])]))
"""

if __name__ == "__main__":
    main(sys.argv[1:])
