#!/bin/sh
# Prints the interpreter `make` builds .venv from (override: `make PYTHON=...`).
#
# Among the Pythons >= 3.11 found here that can make a virtual environment, the first whose
# executable has the interpreter linked in (no libpython shared library loaded: Debian's
# /usr/bin/python3, python.org's and uv's builds) wins; else the first of them. A build
# that runs Python through libpython.so (pyenv's default) pays an indirect call on every
# C-API call: the embedded pipeline ran 13% faster on Debian's python3.11 than on pyenv's,
# on the same machine (README, Benchmarks).
set -u
first=""
for candidate in python3 python3.11 python3.12 python3.13 /usr/bin/python3 /usr/local/bin/python3; do
    verdict=$("$candidate" - <<'EOF' 2>/dev/null
import sys
if sys.version_info < (3, 11):
    raise SystemExit(1)
import ensurepip, venv  # noqa: F401,E401 - Debian ships them apart (python3-venv)
try:
    with open("/proc/self/maps") as maps:
        print("shared" if "libpython" in maps.read() else "static")
except OSError:  # no /proc: cannot tell
    print("shared")
EOF
    ) || continue
    if [ "$verdict" = static ]; then
        echo "$candidate"
        exit 0
    fi
    [ -n "$first" ] || first=$candidate
done
echo "${first:-python3}"
