#!/usr/bin/env bash
# Idempotent set-up for `make demo`, `make test` and `make bench` on Debian:
# the system packages the real-server tests and the lab need, then a
# virtualenv (.venv) with every workspace distribution installed editable.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  python3 python3-venv
  # tests/test_packaging.py checks the systemd unit with systemd-analyze verify.
  systemd
  iproute2 nftables procps util-linux openssl ca-certificates
  dnsmasq-base kea-dhcp4-server kea-dhcp6-server
  isc-dhcp-client udhcpc dhcpcd-base tcpdump iputils-ping
  # The observers' tests compare against conntrack, ulogd2 and dig.
  conntrack ulogd2 ulogd2-json bind9-dnsutils
  # The PPPoE tests: real pppd and pppoe-server run in a qemu VM booting
  # Debian's kernel (fetched below), with a static busybox as its initramfs.
  qemu-system-x86 ppp pppoe busybox-static iperf3
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
.venv/bin/python -c 'import routerd, routerd_healthcheck, routerd_pppoe, routerctl' 
# Bytecode for everything installed and for the workspace sources: uv writes
# none, PYTHONDONTWRITEBYTECODE=1 is set on these machines and a hardened unit
# (ProtectSystem=strict) could not write it at run time, so without it every
# daemon start compiles pyroute2, falcon, pydantic... from source (docs/decisions.md,
# "Process model"). compileall writes whatever that variable says and skips
# what is up to date, so a re-run takes well under a second.
.venv/bin/python -m compileall -q -j 0 .venv/lib/python3*/site-packages \
  routerd-core/src routerctl/src plugins/*/src >/dev/null
echo "setup: .venv ready ($(.venv/bin/python --version))"

# The test VM's kernel: Debian 12's current linux-image-*-amd64 (the
# metapackage linux-image-amd64 names it), unpacked once into .tools/vm/
# and reduced to vmlinux and the modules the VM loads (routerd.testing.vm).
vm_dir=.tools/vm
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null \
    | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}
kpkg=$(kernel_package)
if [ -z "$kpkg" ] && [ "$(id -u)" = 0 ]; then
  apt-get update -q
  kpkg=$(kernel_package)
fi
if [ -z "$kpkg" ]; then
  echo "setup: apt-cache does not know linux-image-amd64; cannot fetch the test VM's kernel" >&2
  exit 1
fi
kver=${kpkg#linux-image-}
if [ ! -f "$vm_dir/kernel-$kver/version" ]; then
  echo "setup: fetching $kpkg for the test VM"
  download="$vm_dir/.download"
  rm -rf "$download"
  mkdir -p "$download"
  # apt-get download as root warns that _apt cannot write here; harmless.
  (cd "$download" && apt-get download -q "$kpkg" 2>&1 | grep -v "^W: Download is performed unsandboxed" >&2 || true)
  dpkg-deb -x "$download"/"$kpkg"_*.deb "$download/root"
  .venv/bin/python -m routerd.testing.vm install-kernel "$download/root" "$vm_dir" >/dev/null
  rm -rf "$download"
  # Older kernels are not needed once the new one is in place.
  for old in "$vm_dir"/kernel-*; do
    [ "$old" = "$vm_dir/kernel-$kver" ] || rm -rf "$old"
  done
fi
echo "setup: test VM kernel $kver in $vm_dir"
