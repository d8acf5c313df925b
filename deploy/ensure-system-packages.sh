#!/usr/bin/env bash
# Install the system packages the project needs (Debian/Ubuntu, apt-get), only those missing.
#
# Needed: redis-server + redis-cli, PostgreSQL server binaries (devstack runs its own
# throwaway servers from them), python3 venv (+ headers, gcc, make to build wheels),
# curl and wrk for smoke and load tests. Optional: Go and redigo, for the benchmark's Go peer
# (benchmarks/baselines/go_peer; the benchmark skips it where they are missing).
#
# Never starts the Debian redis/postgresql services: a policy-rc.d that denies every
# start is in place while apt-get runs, so nothing new runs afterwards. Services that
# already exist are left alone; the project never depends on them.
#
# Quiet and exit 0 when everything is present. Without root or apt-get it prints what
# is missing and exits 1 if something required is missing.
set -euo pipefail

missing_pkgs=()   # Debian packages to install
missing_what=()   # human-readable, for the report
required_missing=0

have() { command -v "$1" >/dev/null 2>&1; }

pg_bin_present() {
    local d
    if have pg_config; then
        d="$(pg_config --bindir 2>/dev/null || true)"
        if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
            return 0
        fi
    fi
    for d in /usr/lib/postgresql/*/bin; do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
            return 0
        fi
    done
    have initdb && have pg_ctl && have postgres
}

python_venv_ok() {
    have python3 && python3 -c 'import venv, ensurepip' >/dev/null 2>&1
}

python_headers_ok() {
    have python3 && python3 -c '
import os, sys, sysconfig
sys.exit(0 if os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
' >/dev/null 2>&1
}

need() {  # need PACKAGE DESCRIPTION REQUIRED(0|1)
    missing_pkgs+=("$1")
    missing_what+=("$2 (package $1)")
    if [[ "$3" == 1 ]]; then required_missing=1; fi
}

check() {
    missing_pkgs=()
    missing_what=()
    required_missing=0
    have redis-server || need redis-server "redis-server" 1
    have redis-cli || need redis-tools "redis-cli" 1
    pg_bin_present || need postgresql "PostgreSQL server binaries (initdb, pg_ctl, postgres)" 1
    python_venv_ok || need python3-venv "python3 venv/ensurepip" 1
    python_headers_ok || need python3-dev "Python headers (Python.h)" 0
    have gcc || need gcc "gcc" 0
    have make || need make "make" 0
    have curl || need curl "curl" 0
    have wrk || need wrk "wrk" 0
    have go || need golang-go "go (benchmark's Go peer)" 0
    [[ -d /usr/share/gocode/src/github.com/gomodule/redigo/redis ]] ||
        need golang-github-gomodule-redigo-dev "redigo (benchmark's Go peer)" 0
}

report() {
    local item
    for item in "${missing_what[@]}"; do
        echo "missing: $item" >&2
    done
}

check
if [[ ${#missing_pkgs[@]} -eq 0 ]]; then
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]] || ! have apt-get; then
    report
    echo "install with: apt-get install --no-install-recommends ${missing_pkgs[*]}" >&2
    exit "$required_missing"
fi

echo "installing: ${missing_pkgs[*]}"

# Deny service starts during the install (invoke-rc.d and deb-systemd-invoke honour
# policy-rc.d). An existing policy-rc.d is someone else's: keep it as it is.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# temporary, from ensure-system-packages.sh: start no services\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    own_policy=1
fi
cleanup() {
    if [[ "$own_policy" == 1 ]]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
apt-get update -qq
install() { apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
if ! install "${missing_pkgs[@]}"; then
    # One unavailable package must not block the others: retry them one at a time.
    for pkg in "${missing_pkgs[@]}"; do
        install "$pkg" || echo "could not install $pkg" >&2
    done
fi

check
if [[ ${#missing_pkgs[@]} -gt 0 ]]; then
    report
    exit "$required_missing"
fi
echo "system packages: all present"
