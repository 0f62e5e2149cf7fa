"""A qemu VM running the stock Debian 12 kernel, for tests that need kernel PPP.

The development machine's kernel has no PPP (no ``ppp_generic``, no
``/dev/ppp``, no ``AF_PPPOX``), so real ``pppd`` sessions run in a VM:

- the kernel is Debian's ``linux-image-6.1.*-amd64``, fetched by
  ``scripts/setup.sh`` with ``apt-get download`` and reduced to ``vmlinuz`` and
  the modules listed in :data:`VM_MODULES` (and what they depend on), under
  ``.tools/vm/kernel-<version>/`` (see :func:`install_kernel`);
- a small initramfs (static busybox, those modules, an ``/init`` script) is
  built per boot: it loads the modules with ``insmod`` in dependency order,
  mounts the host's root file system read-only over virtio-9p, puts a tmpfs
  upper layer over it with overlayfs, and ``switch_root``\\ s into it. The VM
  therefore sees the host's ``/usr`` (``pppd``, ``pppoe-server``, ``ip``),
  the repository and its ``.venv``; whatever it writes (``/etc/ppp``,
  ``/tmp``) stays in the VM's memory;
- PID 1 is then :mod:`routerd.testing.vm_agent`, a line-based JSON RPC over a
  virtio-serial port that the host reaches through a Unix socket. It runs
  commands, starts background processes, signals them by PID, reads and
  writes files.

qemu runs with TCG (no KVM: nested virtualization does not work on the
machines this project runs on), one vCPU. Python is 20-30x slower inside, so
the host compiles bytecode (:func:`compile_bytecode`) before the boot.

Usage::

    with QemuVM(find_kernel(), workdir) as vm:   # boots, waits for the agent
        vm.run(["ip", "netns", "add", "ac"])
        proc = vm.spawn(["pppoe-server", ...], log="/tmp/ac.log", netns="ac")
        proc.wait_for_log("...")
        proc.stop()                                # by PID, inside the VM
    # qemu killed by PID, its work directory removed

By hand: ``python -m routerd.testing.vm shell`` boots a VM and runs each
line typed as a shell command inside it (see ``docs/testing.md``).
"""

from __future__ import annotations

import argparse
import atexit
import base64
from collections.abc import Iterable
from collections.abc import Sequence
import contextlib
from dataclasses import dataclass
import gzip
import io
import json
import os
from pathlib import Path
import re
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from types import TracebackType
from typing import Any
from typing import Self

from routerd.testing.netns import find_tool
from routerd.testing.netns import log_tail

__all__ = [
    "VM_MODULES",
    "AgentError",
    "KernelImage",
    "QemuVM",
    "VMError",
    "VMProcess",
    "VMResult",
    "build_initramfs",
    "compile_bytecode",
    "default_vm_dir",
    "find_kernel",
    "install_kernel",
    "require_vm_prereqs",
    "vm_prereq_problem",
]

#: Modules the VM loads (their dependencies are added): PPP and PPPoE for
#: pppd and the ``kernel`` backend, veth and tun for the test topology,
#: bridge and virtio-net for a NIC shared with the host, and what the boot
#: itself needs (virtio PCI, the agent's virtio-serial port, 9p, overlayfs).
VM_MODULES = (
    "virtio_pci",
    "virtio_console",
    "9pnet_virtio",
    "9p",
    "overlay",
    "ppp_generic",
    "pppox",
    "pppoe",
    "ppp_async",
    "slhc",
    "veth",
    "tun",
    "bridge",
    "virtio_net",
)
#: Virtio-serial port name the agent listens on.
AGENT_PORT = "routerd.agent"
#: Seconds allowed from qemu's start to the agent's hello (TCG boot is ~5 s).
BOOT_TIMEOUT = 90.0
#: Slack added to every agent call's own timeout: the VM is slow.
CALL_SLACK = 30.0
_MODULES_LIST = "modules.load"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class VMError(RuntimeError):
    """The VM could not be prepared, booted or reached."""


class AgentError(RuntimeError):
    """The agent inside the VM answered a request with an error."""


def default_vm_dir() -> Path:
    """Return where ``scripts/setup.sh`` puts kernels: ``$ROUTERD_VM_DIR`` or ``.tools/vm``."""
    env = os.environ.get("ROUTERD_VM_DIR")
    if env:
        return Path(env)
    # routerd-core/src/routerd/testing/vm.py -> the repository root.
    return Path(__file__).resolve().parents[4] / ".tools" / "vm"


def repo_root() -> Path:
    """Return the repository root (this module lives in routerd-core/src)."""
    return Path(__file__).resolve().parents[4]


# -- the kernel -----------------------------------------------------------


@dataclass(frozen=True)
class KernelImage:
    """An installed kernel: ``vmlinuz`` and modules in load order.

    :ivar directory: ``.tools/vm/kernel-<version>``.
    :ivar version: the kernel release, for example ``6.1.0-57-amd64``.
    """

    directory: Path
    version: str

    @property
    def vmlinuz(self) -> Path:
        """The kernel image as packaged (a compressed bzImage)."""
        return self.directory / "vmlinuz"

    @property
    def boot_image(self) -> Path:
        """The image qemu boots: the uncompressed ``vmlinux`` when present.

        qemu boots an ELF ``vmlinux`` through its PVH entry point, which
        skips decompressing the bzImage inside the emulated CPU.
        """
        vmlinux = self.directory / "vmlinux"
        return vmlinux if vmlinux.exists() else self.vmlinuz

    def modules(self) -> list[Path]:
        """Return the module files, each after the modules it depends on."""
        names = (self.directory / _MODULES_LIST).read_text().split()
        return [self.directory / "modules" / n for n in names]


def _elf_section(data: bytes, wanted: str) -> bytes | None:
    """Return the contents of section *wanted* of a little-endian ELF64 file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a little-endian ELF64 file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        name = struct.unpack_from("<I", data, base)[0]
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        return name, offset, size

    _, str_off, _ = header(shstrndx)
    for i in range(shnum):
        name_off, offset, size = header(i)
        end = data.index(b"\0", str_off + name_off)
        if data[str_off + name_off : end].decode() == wanted:
            return data[offset : offset + size]
    return None


def module_depends(path: Path) -> list[str]:
    """Return the ``depends=`` names from a kernel module's ``.modinfo``."""
    info = _elf_section(path.read_bytes(), ".modinfo") or b""
    for entry in info.split(b"\0"):
        if entry.startswith(b"depends="):
            return [d for d in entry[len(b"depends=") :].decode().split(",") if d]
    return []


def _norm(name: str) -> str:
    return name.replace("-", "_")


def install_kernel(extracted: Path, dest_root: Path, modules: Iterable[str] = VM_MODULES) -> Path:
    """Copy a kernel and the modules the VM needs out of an extracted package.

    *extracted* is the output of ``dpkg-deb -x linux-image-...deb DIR``. The
    package has no ``modules.dep`` (``depmod`` makes it at install time), so
    dependencies come from each module's ``.modinfo`` section. Modules built
    into the kernel (``modules.builtin``) are skipped.

    :returns: the new ``dest_root/kernel-<version>`` directory.
    :raises VMError: no kernel, or a module neither present nor built in.
    """
    images = sorted((extracted / "boot").glob("vmlinuz-*"))
    if len(images) != 1:
        raise VMError(f"expected one vmlinuz in {extracted}/boot, found {images}")
    version = images[0].name.removeprefix("vmlinuz-")
    moddir = extracted / "lib" / "modules" / version
    by_name = {_norm(p.name.removesuffix(".ko")): p for p in moddir.rglob("*.ko")}
    builtin = {
        _norm(Path(line.strip()).name.removesuffix(".ko"))
        for line in (moddir / "modules.builtin").read_text().splitlines()
    }
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        name = _norm(name)
        if name in order or name in builtin:
            return
        if name in visiting:
            raise VMError(f"module dependency cycle at {name}")
        if name not in by_name:
            raise VMError(f"module {name} not in {moddir} and not built in")
        visiting.add(name)
        for dep in module_depends(by_name[name]):
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for m in modules:
        visit(m)
    dest = dest_root / f"kernel-{version}"
    tmp = dest_root / f".kernel-{version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "modules").mkdir(parents=True)
    shutil.copy2(images[0], tmp / "vmlinuz")
    vmlinux = _decompress_bzimage(images[0].read_bytes())
    if vmlinux is not None:
        (tmp / "vmlinux").write_bytes(vmlinux)
    config = extracted / "boot" / f"config-{version}"
    if config.exists():
        shutil.copy2(config, tmp / "config")
    files = []
    for name in order:
        src = by_name[name]
        shutil.copy2(src, tmp / "modules" / src.name)
        files.append(src.name)
    (tmp / _MODULES_LIST).write_text("\n".join(files) + "\n")
    (tmp / "version").write_text(version + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _decompress_bzimage(image: bytes) -> bytes | None:
    """Return the ELF ``vmlinux`` inside an xz- or gzip-compressed bzImage.

    Debian compresses with xz; unpacking it in an emulated CPU takes about
    two seconds of every boot, on the host half a second once.
    """
    import lzma
    import zlib

    for magic, make in (
        (b"\xfd7zXZ\x00", lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ)),
        (b"\x1f\x8b\x08", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)),
    ):
        start = image.find(magic)
        while start >= 0:
            try:
                out = make().decompress(image[start:])
            except (lzma.LZMAError, zlib.error):
                out = b""
            if out[:4] == b"\x7fELF":
                return out
            start = image.find(magic, start + 1)
    return None


def _version_key(version: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", version)]


def find_kernel(vm_dir: Path | None = None) -> KernelImage | None:
    """Return the newest kernel installed under *vm_dir*, or ``None``."""
    root = vm_dir or default_vm_dir()
    found = [
        KernelImage(d, (d / "version").read_text().strip())
        for d in root.glob("kernel-*")
        if (d / "version").exists() and (d / "vmlinuz").exists()
    ]
    if not found:
        return None
    return max(found, key=lambda k: _version_key(k.version))


# -- prerequisites --------------------------------------------------------

#: Host programs the VM needs (the VM runs them from the host's root).
VM_TOOLS = ("qemu-system-x86_64", "busybox", "ip")


def vm_prereq_problem(tools: Iterable[str] = ()) -> str | None:
    """Return why the VM cannot run here, or ``None`` when it can.

    :param tools: more programs needed inside the VM (they come from the
        host's root file system), for example ``["pppd", "pppoe-server"]``.
    """
    if os.geteuid() != 0:
        return "the qemu VM needs root (9p export of /, namespaces inside)"
    missing = [t for t in (*VM_TOOLS, *tools) if find_tool(t) is None]
    if missing:
        return "missing tool(s): " + ", ".join(missing) + " (run scripts/setup.sh)"
    busybox = find_tool("busybox")
    assert busybox is not None
    if not _is_static(Path(busybox)):
        return f"{busybox} is not statically linked (install busybox-static)"
    if find_kernel() is None:
        return f"no VM kernel under {default_vm_dir()} (run scripts/setup.sh)"
    return None


def require_vm_prereqs(tools: Iterable[str] = ()) -> None:
    """Skip the calling test unless the VM can run; fail instead under ``CI=true``."""
    import pytest  # NOTE: lazily, so benchmarks and scripts can use the VM too.

    reason = vm_prereq_problem(tools)
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and VM prerequisite missing: {reason}")
    pytest.skip(reason)


def _is_static(path: Path) -> bool:
    """Tell whether an ELF executable has no program interpreter (PT_INTERP)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    pt_interp = 3
    return all(
        struct.unpack_from("<I", data, phoff + i * phentsize)[0] != pt_interp for i in range(phnum)
    )


# -- bytecode ---------------------------------------------------------------


def bytecode_dirs() -> list[Path]:
    """Return the directories whose bytecode the VM's Python benefits from.

    The interpreter's standard library, the virtualenv's site-packages and
    every workspace ``src`` directory (editable installs import from there).
    """
    import sysconfig

    dirs = {Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])}
    root = repo_root()
    dirs.update(root.glob("*/src"))
    dirs.update(root.glob("plugins/*/src"))
    return sorted(d for d in dirs if d.is_dir())


def compile_bytecode(dirs: Iterable[Path] | None = None) -> None:
    """Write missing or stale ``.pyc`` files for *dirs* (default :func:`bytecode_dirs`).

    The test environment may set ``PYTHONDONTWRITEBYTECODE``, so imports on
    the host never write them; :mod:`compileall` writes them regardless.
    Inside the VM a missing ``.pyc`` costs a compile at every import (tens
    of seconds for pydantic). Up-to-date files are left alone, so a second
    call costs only the ``stat`` calls.
    """
    import compileall
    import warnings

    for d in dirs if dirs is not None else bytecode_dirs():
        # NOTE: workers=1: the machines have two cores shared by many jobs.
        # Test data in the standard library has deliberate SyntaxWarnings.
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            compileall.compile_dir(d, quiet=2, workers=1)


# -- the initramfs ------------------------------------------------------------

_INIT = r"""#!/bin/busybox sh
# routerd test VM init: modules, host root over 9p + tmpfs overlay, agent.
/bin/busybox mkdir -p /proc /sys /dev /mnt/lower /mnt/rw /mnt/root
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in $(/bin/busybox cat /modules.load); do
  /bin/busybox insmod /modules/$m || echo "init: insmod $m failed"
done
/bin/busybox mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,@CACHE@ hostroot /mnt/lower \
  || { echo "init: 9p mount failed"; exec /bin/busybox sh; }
/bin/busybox mount -t tmpfs -o mode=0755 rw /mnt/rw
/bin/busybox mkdir -p /mnt/rw/upper /mnt/rw/work
/bin/busybox mount -t overlay overlay \
  -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /mnt/root \
  || { echo "init: overlay mount failed"; exec /bin/busybox sh; }
for d in proc sys dev; do /bin/busybox mount --move /$d /mnt/root/$d; done
/bin/busybox mkdir -p /mnt/root/dev/pts /mnt/root/dev/shm
/bin/busybox mount -t devpts -o newinstance,ptmxmode=0666 devpts /mnt/root/dev/pts
/bin/busybox mount -t tmpfs -o mode=1777 shm /mnt/root/dev/shm
/bin/busybox mount -t tmpfs -o mode=0755 run /mnt/root/run
/bin/busybox mount -t tmpfs -o mode=1777 tmp /mnt/root/tmp
/bin/busybox hostname routerd-vm
echo "init: switching root at $(/bin/busybox cat /mnt/root/proc/uptime)"
exec /bin/busybox switch_root /mnt/root @AGENT@
"""


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> bytes:
    """Return one ``newc`` cpio entry (header, name, data, padding)."""
    encoded = name.encode() + b"\0"
    fields = [0, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def build_initramfs(
    kernel: KernelImage,
    out: Path,
    agent_argv: Sequence[str],
    *,
    busybox: Path | None = None,
    cache: str = "cache=loose",
) -> Path:
    """Write a gzip-compressed cpio initramfs for *kernel* to *out*.

    :param agent_argv: what ``switch_root`` execs as PID 1 (paths as seen
        from the host root, which the VM mounts as its own).
    :param busybox: a static busybox (default: the one on ``PATH``).
    :param cache: the 9p cache mode. ``cache=loose`` caches file data and
        metadata in the VM: Python imports get several times faster, and
        files changed on the host after the VM read them may look stale
        inside (the VM lives for one test session).
    """
    bb = busybox or Path(find_tool("busybox") or "/bin/busybox")
    if not _is_static(bb):
        raise VMError(f"{bb} is not statically linked (install busybox-static)")
    init = _INIT.replace("@CACHE@", cache).replace("@AGENT@", shlex.join(agent_argv))
    entries = [
        _cpio_entry(d, stat.S_IFDIR | 0o755)
        for d in ("bin", "dev", "proc", "sys", "mnt", "modules")
    ]
    entries.append(_cpio_entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    entries.append(_cpio_entry("bin/busybox", stat.S_IFREG | 0o755, bb.read_bytes()))
    entries.append(_cpio_entry("init", stat.S_IFREG | 0o755, init.encode()))
    names = []
    for module in kernel.modules():
        names.append(module.name)
        entries.append(
            _cpio_entry(f"modules/{module.name}", stat.S_IFREG | 0o644, module.read_bytes())
        )
    entries.append(
        _cpio_entry("modules.load", stat.S_IFREG | 0o644, ("\n".join(names) + "\n").encode())
    )
    entries.append(_cpio_entry("TRAILER!!!", 0))
    out.write_bytes(gzip.compress(b"".join(entries), compresslevel=1))
    return out


# -- the VM ---------------------------------------------------------------------


@dataclass(frozen=True)
class VMResult:
    """What a command run inside the VM did.

    :ivar argv: the command as run (with any ``ip netns exec`` prefix).
    :ivar returncode: its exit code, negative for a signal, ``None`` when
        it was killed at its timeout and not reaped in time.
    :ivar timed_out: it ran past its timeout and was killed.
    """

    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False

    def check(self) -> Self:
        """Return ``self``, or raise :class:`subprocess.CalledProcessError`."""
        if self.returncode != 0:
            raise subprocess.CalledProcessError(
                -999 if self.returncode is None else self.returncode,
                self.argv,
                output=self.stdout,
                stderr=self.stderr,
            )
        return self


def _netns_argv(argv: Sequence[str], netns: str | None) -> list[str]:
    args = [os.fspath(a) for a in argv]
    if not args:
        raise ValueError("empty argv")
    return ["ip", "netns", "exec", netns, *args] if netns else args


class VMProcess:
    """A background process inside the VM, logging to a file there, ended by PID.

    Made by :meth:`QemuVM.spawn`; the same shape as
    :class:`routerd.testing.netns.ManagedProcess`.

    :ivar pid: the PID inside the VM (``ip netns exec`` execs in place, so
        it is the program's own).
    :ivar started: the VM's wall clock when it was started (``time.time()``
        inside the VM), to compare with timestamps the program writes.
    """

    def __init__(self, vm: QemuVM, argv: list[str], log: str, pid: int, started: float) -> None:
        self.vm = vm
        self.argv = argv
        self.log = log
        self.pid = pid
        self.started = started
        self._returncode: int | None = None

    def __repr__(self) -> str:
        return f"<VMProcess pid={self.pid} {' '.join(self.argv[:6])}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal), ``None`` if running."""
        if self._returncode is None:
            self._returncode = self.vm.call("wait", pid=self.pid, timeout=0)["rc"]
        return self._returncode

    def alive(self) -> bool:
        """Tell whether the process is still running."""
        return self.returncode is None

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for the process to exit on its own; return its exit code.

        :raises TimeoutError: still running after *timeout*.
        """
        if self._returncode is None:
            rc = self.vm.call("wait", pid=self.pid, timeout=timeout)["rc"]
            if rc is None:
                raise TimeoutError(f"{self!r} still running after {timeout}s")
            self._returncode = int(rc)
        return self._returncode

    def signal(self, sig: signal.Signals) -> None:
        """Send *sig* to the process by PID."""
        if self._returncode is None:
            self.vm.call("signal", pid=self.pid, sig=int(sig))

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM by PID, wait, then SIGKILL; return the exit code. Idempotent."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                return self.wait(timeout)
            except TimeoutError:
                self.signal(signal.SIGKILL)
        return self.wait(timeout)

    def kill(self) -> int:
        """SIGKILL by PID and wait for the exit; return the exit code."""
        self.signal(signal.SIGKILL)
        return self.wait()

    def log_text(self) -> str:
        """Return what the process has logged so far."""
        return self.vm.read_file(self.log).decode("utf-8", "replace")

    def wait_for_log(
        self, pattern: str | re.Pattern[str], timeout: float = 10.0, *, since: int = 0
    ) -> str:
        """Wait until the log (from *since*) matches *pattern*; return the line.

        :raises TimeoutError: not logged in time (the message has the tail).
        :raises RuntimeError: the process exited without logging it.
        """
        deadline = time.monotonic() + timeout
        while True:
            exited = not self.alive()
            text = self.log_text()
            m = (re.compile(re.escape(pattern)) if isinstance(pattern, str) else pattern).search(
                text, since
            )
            if m is not None:
                start = text.rfind("\n", 0, m.start()) + 1
                end = text.find("\n", m.start())
                return text[start : len(text) if end < 0 else end]
            if exited:
                raise RuntimeError(
                    f"{self!r} exited with {self.returncode} before logging "
                    f"{pattern!r}; log tail:\n{log_tail(text)}"
                )
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self!r} did not log {pattern!r} within {timeout}s; "
                    f"log tail:\n{log_tail(text)}"
                )
            time.sleep(0.05)


class QemuVM:
    """Boot the test VM and talk to its agent; killed by PID at :meth:`close`.

    :param kernel: the kernel to boot (default :func:`find_kernel`).
    :param workdir: a directory for the initramfs, console log and agent
        socket (default: a new temporary directory, removed at close).
    :param memory_mb: guest memory.
    :param extra_args: more qemu arguments (for example a ``-netdev``).
    :param python: the interpreter that runs the agent inside the VM (the
        host path; the VM sees the host's root). Default: ours.
    :param compile: run :func:`compile_bytecode` before booting.
    :param host_netns: a host network namespace to start qemu in, with a
        virtio-net NIC whose other end is the tap :attr:`NIC_TAP` in that
        namespace. Inside the VM the NIC has MAC :attr:`nic_mac`; a
        :class:`~routerd.testing.vm_pppoe.VMPppoeLab` with ``host_client=True``
        moves it into its AC namespace, so a client on the host (the
        ``tun`` backend) talks to the AC in the VM.
    """

    def __init__(
        self,
        kernel: KernelImage | None = None,
        workdir: Path | None = None,
        *,
        memory_mb: int = 1024,
        extra_args: Sequence[str] = (),
        python: str | None = None,
        compile: bool = True,
        host_netns: str | None = None,
    ) -> None:
        found = kernel or find_kernel()
        if found is None:
            raise VMError(f"no VM kernel under {default_vm_dir()} (run scripts/setup.sh)")
        self.kernel = found
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="rdt-vm-"))
        self.memory_mb = memory_mb
        self.extra_args = list(extra_args)
        self.python = python or sys.executable
        self.compile = compile
        self.host_netns = host_netns
        #: The NIC's MAC inside the VM (locally administered, fixed).
        self.nic_mac = "52:54:00:72:64:01"
        self.console_log = self.workdir / "console.log"
        self.socket_path = self.workdir / "agent.sock"
        self._popen: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._buf = b""
        self._lock = threading.Lock()
        self._next_id = 0
        self._closed = False
        #: Seconds from qemu's start to the agent's hello.
        self.boot_seconds: float | None = None
        #: The VM's uptime when the agent said hello (kernel + init + Python).
        self.guest_uptime_at_ready: float | None = None
        #: Seconds :func:`compile_bytecode` took before the boot.
        self.compile_seconds: float | None = None

    def __repr__(self) -> str:
        pid = self._popen.pid if self._popen else None
        return f"<QemuVM {self.kernel.version} pid={pid}>"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """qemu's PID on the host while it runs."""
        return self._popen.pid if self._popen is not None else None

    def venv_program(self, name: str) -> str:
        """Return the path of program *name* beside :attr:`python` (the venv's ``bin``).

        The VM sees the host's root, so ``vm.venv_program("routerd")`` runs
        the repository's own ``routerd`` inside it.
        """
        return str(Path(self.python).parent / name)

    def agent_argv(self) -> list[str]:
        """Return the agent's command line, as exec'd by the VM's init."""
        agent = Path(__file__).resolve().with_name("vm_agent.py")
        return [self.python, "-I", "-S", str(agent), AGENT_PORT]

    def qemu_argv(self, initramfs: Path) -> list[str]:
        """Return qemu's command line."""
        qemu = find_tool("qemu-system-x86_64") or "qemu-system-x86_64"
        append = " ".join(
            [
                "console=ttyS0",
                "panic=-1",
                "quiet",
                "loglevel=4",
                # TCG: skip work that only costs time in an emulated CPU.
                "mitigations=off",
                "tsc=reliable",
                "no_timer_check",
                "random.trust_cpu=on",
                "rdinit=/init",
            ]
        )
        return [
            qemu,
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-machine",
            "pc,accel=tcg",
            "-cpu",
            "max",
            "-smp",
            "1",
            "-m",
            str(self.memory_mb),
            "-no-reboot",
            "-kernel",
            str(self.kernel.boot_image),
            "-initrd",
            str(initramfs),
            "-append",
            append,
            "-chardev",
            f"file,id=con,path={self.console_log}",
            "-serial",
            "chardev:con",
            "-fsdev",
            "local,id=r,path=/,readonly=on,security_model=none,multidevs=remap",
            "-device",
            "virtio-9p-pci,fsdev=r,mount_tag=hostroot",
            "-device",
            "virtio-serial-pci",
            "-chardev",
            f"socket,id=agent,path={self.socket_path},server=on,wait=off",
            "-device",
            f"virtserialport,chardev=agent,name={AGENT_PORT}",
            *self._nic_args(),
            *self.extra_args,
        ]

    #: The tap device qemu makes in :attr:`host_netns` for the VM's NIC.
    NIC_TAP = "vmtap0"

    def _nic_args(self) -> list[str]:
        if self.host_netns is None:
            return []
        return [
            "-netdev",
            f"tap,id=wan,ifname={self.NIC_TAP},script=no,downscript=no",
            "-device",
            # romfile=: no PXE option ROM, the VM never network-boots.
            f"virtio-net-pci,netdev=wan,mac={self.nic_mac},romfile=",
        ]

    def start(self, timeout: float = BOOT_TIMEOUT) -> Self:
        """Boot the VM and wait for the agent; return ``self``.

        :raises VMError: qemu exited or the agent did not answer in time;
            the message has the console log's tail. qemu is killed.
        """
        if self._popen is not None:
            raise VMError(f"{self!r} already started")
        if self.compile:
            t0 = time.monotonic()
            compile_bytecode()
            self.compile_seconds = time.monotonic() - t0
        initramfs = build_initramfs(self.kernel, self.workdir / "initramfs.gz", self.agent_argv())
        t0 = time.monotonic()
        argv = self.qemu_argv(initramfs)
        if self.host_netns is not None:
            # ip netns exec execs qemu in place: the PID stays qemu's, and
            # the tap is made inside the namespace, never in the host's.
            argv = [find_tool("ip") or "ip", "netns", "exec", self.host_netns, *argv]
        self._popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "qemu.log", "wb"),  # noqa: SIM115 (the child keeps it)
            start_new_session=True,
        )
        _live_vms.add(self)
        try:
            self._connect(t0 + timeout)
            hello = self._read_message(t0 + timeout)
            if hello.get("event") != "hello":
                raise VMError(f"unexpected first message from the agent: {hello}")
            self.boot_seconds = time.monotonic() - t0
            self.guest_uptime_at_ready = float(hello["uptime"])
        except BaseException as e:
            detail = self.diagnostics()
            self.close()
            if isinstance(e, VMError | TimeoutError | OSError):
                raise VMError(f"{self!r} did not boot: {e}\n{detail}") from e
            raise
        return self

    def _connect(self, deadline: float) -> None:
        while True:
            self._check_running()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.socket_path))
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() >= deadline:
                    raise TimeoutError("qemu's agent socket never appeared") from None
                time.sleep(0.02)
                continue
            self._sock = sock
            return

    def _check_running(self) -> None:
        if self._popen is None or self._popen.poll() is not None:
            code = None if self._popen is None else self._popen.returncode
            raise VMError(f"qemu is not running (exit {code})")

    def _read_message(self, deadline: float) -> dict[str, Any]:
        assert self._sock is not None
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer from the VM agent in time")
            self._sock.settimeout(min(remaining, 0.5))
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                self._check_running()
                continue
            if not chunk:
                raise VMError("the VM agent's socket closed (the VM died?)")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def diagnostics(self) -> str:
        """Return the tails of the console log and qemu's stderr."""
        parts = []
        for name in ("console.log", "qemu.log"):
            with contextlib.suppress(OSError):
                text = (self.workdir / name).read_bytes().decode("utf-8", "replace")
                parts.append(f"{name} tail:\n{log_tail(text)}")
        return "\n".join(parts)

    # -- agent calls --------------------------------------------------------

    def call(self, op: str, timeout: float = 10.0, **params: Any) -> dict[str, Any]:
        """Send one request to the agent and return its answer.

        :param timeout: the operation's own timeout, passed to the agent;
            the host waits that long plus :data:`CALL_SLACK`.
        :raises AgentError: the agent reported an error.
        :raises VMError: the VM is gone or did not answer.
        """
        with self._lock:
            if self._sock is None or self._closed:
                raise VMError(f"{self!r} is not running")
            self._next_id += 1
            req_id = self._next_id
            line = json.dumps({"id": req_id, "op": op, "timeout": timeout, **params}) + "\n"
            self._sock.sendall(line.encode())
            deadline = time.monotonic() + timeout + CALL_SLACK
            while True:
                answer = self._read_message(deadline)
                if answer.get("id") == req_id:
                    break
        if not answer.get("ok"):
            raise AgentError(f"{op}: {answer.get('error')}")
        return answer

    def _env(self, env: dict[str, str] | None) -> dict[str, str]:
        base = {"PATH": _PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
        base.update(env or {})
        return base

    def run(
        self,
        argv: Sequence[str],
        *,
        netns: str | None = None,
        timeout: float = 30.0,
        check: bool = True,
        input: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> VMResult:
        """Run *argv* in the VM (in *netns* if given) and wait for it.

        :param env: added to a minimal environment (``PATH``, ``HOME``, ``LANG``).
        :raises subprocess.CalledProcessError: *check* and a non-zero exit.
        """
        args = _netns_argv(argv, netns)
        answer = self.call(
            "run", timeout=timeout, argv=args, input=input, env=self._env(env), cwd=cwd
        )
        result = VMResult(
            args, answer["rc"], answer["stdout"], answer["stderr"], bool(answer["timed_out"])
        )
        return result.check() if check else result

    def sh(self, script: str, *, netns: str | None = None, timeout: float = 30.0) -> str:
        """Run a shell *script* in the VM, check it, and return its stdout."""
        return self.run(["sh", "-c", script], netns=netns, timeout=timeout).stdout

    def spawn(
        self,
        argv: Sequence[str],
        log: str,
        *,
        netns: str | None = None,
        env: dict[str, str] | None = None,
        append: bool = False,
    ) -> VMProcess:
        """Start *argv* in the VM in the background, output to *log* (a VM path)."""
        args = _netns_argv(argv, netns)
        answer = self.call("spawn", argv=args, log=log, env=self._env(env), append=append)
        return VMProcess(self, args, log, int(answer["pid"]), float(answer["time"]))

    def read_file(self, path: str) -> bytes:
        """Return a file's contents from the VM, ``b""`` when it does not exist."""
        return base64.b64decode(self.call("read", path=path)["data"])

    def file_exists(self, path: str) -> bool:
        """Tell whether *path* exists in the VM."""
        return bool(self.call("read", path=path, limit=0)["exists"])

    def write_file(self, path: str, data: bytes | str, mode: int = 0o600) -> None:
        """Write a file in the VM (parents made), with *mode* (private by default)."""
        raw = data.encode() if isinstance(data, str) else data
        self.call("write", path=path, data=base64.b64encode(raw).decode(), mode=mode)

    def unix_http(
        self,
        socket_path: str,
        path: str,
        *,
        method: str = "GET",
        body: Any = None,
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        """Send one HTTP request to a Unix socket inside the VM (a daemon's API).

        :param body: sent as JSON when not ``None``.
        :returns: the status code and the decoded JSON body (the raw text
            when it is not JSON).
        """
        answer = self.call(
            "unix_http",
            timeout=timeout,
            socket=socket_path,
            path=path,
            method=method,
            body=None if body is None else json.dumps(body),
        )
        text = answer["body"]
        try:
            return int(answer["status"]), json.loads(text)
        except ValueError:
            return int(answer["status"]), text

    def time(self) -> float:
        """Return the VM's wall clock (``time.time()`` inside)."""
        return float(self.call("ping")["time"])

    def stop_all(self, timeout: float = 5.0) -> list[int]:
        """End every process spawned in the VM, by PID; return those still running."""
        answer = self.call("stop_all", timeout=timeout)
        return [int(p) for p in answer["still_running"]]

    # -- tear-down ------------------------------------------------------------

    def close(self) -> None:
        """Stop the spawned processes, kill qemu by PID, remove the work directory."""
        if self._closed:
            return
        if self._sock is not None and self._popen is not None and self._popen.poll() is None:
            with contextlib.suppress(Exception):
                self.stop_all(timeout=2.0)
        self._closed = True
        if self._sock is not None:
            self._sock.close()
        if self._popen is not None:
            if self._popen.poll() is None:
                # The guest's state is all in memory: nothing to shut down cleanly.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._popen.pid, signal.SIGKILL)
            self._popen.wait(10)
        _live_vms.discard(self)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class _LiveVMs:
    def __init__(self) -> None:
        self._vms: dict[int, QemuVM] = {}
        self._lock = threading.Lock()

    def add(self, vm: QemuVM) -> None:
        with self._lock:
            self._vms[id(vm)] = vm

    def discard(self, vm: QemuVM) -> None:
        with self._lock:
            self._vms.pop(id(vm), None)

    def close_all(self) -> None:
        with self._lock:
            vms = list(self._vms.values())
        for vm in vms:
            with contextlib.suppress(Exception):
                vm.close()


_live_vms = _LiveVMs()
atexit.register(_live_vms.close_all)


# -- command line -----------------------------------------------------------------


def _cmd_install_kernel(args: argparse.Namespace) -> int:
    dest = install_kernel(Path(args.extracted), Path(args.dest))
    print(dest)
    return 0


def _cmd_shell(args: argparse.Namespace) -> int:
    problem = vm_prereq_problem()
    if problem:
        print(f"vm: {problem}", file=sys.stderr)
        return 1
    with QemuVM() as vm:
        print(
            f"vm: ready in {vm.boot_seconds:.1f}s (guest uptime {vm.guest_uptime_at_ready:.1f}s); "
            f"console log {vm.console_log}; qemu pid {vm.pid}. One shell command per line, ^D ends.",
            file=sys.stderr,
        )
        for line in sys.stdin:
            if not line.strip():
                continue
            res = vm.run(["sh", "-c", line], check=False, timeout=args.timeout)
            sys.stdout.write(res.stdout)
            sys.stderr.write(res.stderr)
            print(f"[rc={res.returncode}{' timed out' if res.timed_out else ''}]", file=sys.stderr)
    return 0


def _cmd_boot_time(args: argparse.Namespace) -> int:
    problem = vm_prereq_problem()
    if problem:
        print(f"vm: {problem}", file=sys.stderr)
        return 1
    for _ in range(args.count):
        with QemuVM() as vm:
            print(
                json.dumps(
                    {
                        "boot_seconds": round(vm.boot_seconds or 0, 2),
                        "guest_uptime_at_ready": vm.guest_uptime_at_ready,
                        "compile_seconds": round(vm.compile_seconds or 0, 2),
                    }
                )
            )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m routerd.testing.vm {install-kernel,shell,boot-time}``."""
    parser = argparse.ArgumentParser(prog="python -m routerd.testing.vm")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("install-kernel", help="copy vmlinuz and the needed modules")
    p.add_argument("extracted", help="a directory made by dpkg-deb -x linux-image-*.deb")
    p.add_argument("dest", help="where kernel-<version>/ goes (.tools/vm)")
    p.set_defaults(fn=_cmd_install_kernel)
    p = sub.add_parser("shell", help="boot the VM and run stdin lines in it")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(fn=_cmd_shell)
    p = sub.add_parser("boot-time", help="boot the VM and print how long it took")
    p.add_argument("--count", type=int, default=1)
    p.set_defaults(fn=_cmd_boot_time)
    args = parser.parse_args(argv)
    rc: int = args.fn(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
