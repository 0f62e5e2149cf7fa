#!/usr/bin/env bash
# Idempotent set-up for `make demo`, `make test` and `make bench` on Debian:
# the system packages the real-server tests and the lab need, then a
# virtualenv (.venv) with every workspace distribution installed editable.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  python3 python3-venv
  iproute2 nftables procps util-linux openssl ca-certificates
  dnsmasq-base kea-dhcp4-server kea-dhcp6-server
  isc-dhcp-client udhcpc dhcpcd-base tcpdump
)
if [ "${1:-}" = "--bench" ]; then
  PACKAGES+=(hyperfine)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  # Installing Kea or dnsmasq must not start host services on the machine
  # running the tests: keep invoke-rc.d from starting anything meanwhile.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && created_policy=1
  fi
  trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: routerd needs Python >= 3.11 ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .tools/bin/uv ]; then
  rm -rf .tools
  "$PYTHON" -m venv .tools
  .tools/bin/pip install -q --disable-pip-version-check 'uv>=0.4,<1'
fi
.tools/bin/uv sync --python "$PYTHON" --quiet
.venv/bin/python -c 'import routerd, routerd_healthcheck, routerctl' 
echo "setup: .venv ready ($(.venv/bin/python --version))"
