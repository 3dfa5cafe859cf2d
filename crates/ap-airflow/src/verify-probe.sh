# The probe `ap-airflow verify` runs inside an image, as its user: one `key=value` line per fact (verify.rs
# compares them with the release line). The platform uid, the image's paths and executables (image.rs), the
# step-down user file and the line's config options (Python tuples) are filled in by verify.rs before it runs.
exec 2>/dev/null
st() { if [ -L "$1" ]; then echo "path:$1=$(stat -c '%U:%G %a' "$1") -> $(readlink "$1")"; elif [ -e "$1" ]; then echo "path:$1=$(stat -c '%U:%G %a' "$1")"; fi; }
echo "env:AIRFLOW_VERSION=$AIRFLOW_VERSION"
echo "airflow.version=$(airflow version | tail -n 1)"
echo "python.version=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
echo "id.uid=$(id -u)"
echo "id.user=$(id -un)"
echo "id.group=$(id -gn)"
echo "id.groups=$(id -Gn)"
echo "astrogroup.gid=$(getent group astrogroup | cut -d: -f3)"
echo "platform.groups=$(id -Gn "$(getent passwd @PLATFORM_UID@ | cut -d: -f1)")"
for p in @PATHS@; do st "$p"; done
# The architecture everything is built for: the kernel's (qemu's, under emulation), Python's, and each ELF's
# e_machine (62 x86-64, 183 AArch64).
echo "uname.machine=$(uname -m)"
echo "python.machine=$(python -c 'import platform; print(platform.machine())')"
# (The step-down copy of /entrypoint is not readable by astro.)
for p in @ARCH_CHECKED@; do
  echo "elf:${p}=$(od -An -tu2 -j18 -N2 "$p" | tr -d ' ')"
done
echo "stepdown.user=$(cat @STEPDOWN_USER_FILE@)"
python - <<'PY'
import importlib, warnings
warnings.simplefilter("ignore")
from airflow.configuration import conf
from airflow.providers_manager import ProvidersManager
# What `airflow config get-value` and every component do first: provider sections ([fab], ...) join the defaults.
ProvidersManager().initialize_providers_configuration()
for s, k in [@SETTINGS@]:
    # No fallback=: Airflow returns a fallback before consulting pre_2_7_defaults.cfg.
    try:
        print(f"config.{s}.{k}={conf.get(s, k)}")
    except Exception as e:
        print(f"config.{s}.{k}=<{type(e).__name__}>")
# Every auth backend and the auth manager the image names must exist in it.
try:
    for s, k in [@SETTINGS@]:
        if k == "auth_backends":
            for b in conf.get(s, k).split(","):
                importlib.import_module(b.strip())
        elif k == "auth_manager":
            module, _, cls = conf.get(s, k).rpartition(".")
            getattr(importlib.import_module(module), cls)
    print("auth.importable=yes")
except Exception as e:
    print(f"auth.importable={e}")
PY
if out=$(pip check 2>&1); then echo "pip.check=ok"; else echo "pip.check=$(echo "$out" | head -n 3 | tr '\n' ' ')"; fi
found=$(for c in gcc cc g++ c++ make; do command -v "$c"; done | tr '\n' ' ')
echo "absent.compilers=${found:-yes}"
dev=$(dpkg-query -W -f '${Package}\n' | grep -E -- '-dev(:|$)' | tr '\n' ' ')
echo "absent.dev_packages=${dev:-yes}"
echo "absent.gosu=$(command -v gosu || echo yes)"
echo "absent.devel_ca=$([ -e /tmp/devel-ca.crt ] && echo /tmp/devel-ca.crt || echo yes)"
