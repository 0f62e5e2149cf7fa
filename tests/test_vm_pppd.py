"""The qemu test VM and real pppd sessions in it (the PPPoE tests' fixture).

One VM boots per session (``ppp_vm``); each test gets fresh namespaces in it
(``vm_pppoe_lab``). These validate the fixture and give the benchmark's
anchor: ``pppd`` + ``rp-pppoe.so`` against ``pppoe-server``.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import os
from pathlib import Path
import subprocess
import sys

import pytest
from routerd.testing.vm import QemuVM
from routerd.testing.vm import VMError
from routerd.testing.vm import build_initramfs
from routerd.testing.vm import find_kernel
from routerd.testing.vm import require_vm_prereqs
from routerd.testing.vm_fixtures import VM_TOOLS_PPPOE
from routerd.testing.vm_fixtures import VMHostPppoe
from routerd.testing.vm_pppoe import PPPD_EXIT_PEER_AUTH_FAILED
from routerd.testing.vm_pppoe import IpUp
from routerd.testing.vm_pppoe import VMPppoeLab
from routerd.testing.vm_pppoe import measure_pppd_session_up

pytestmark = pytest.mark.vm

PASSWORD = "pw-7f3c9a1e"
# What the AC's pppd 2.4.9 logs when the client authenticates, or fails to.
AC_LOG_SUCCESS = {
    "pap": "PAP peer authentication succeeded for alice",
    "chap": "sent [CHAP Success",
}
AC_LOG_FAILURE = {
    "pap": "PAP peer authentication failed for alice",
    "chap": "Peer alice failed CHAP authentication",
}


def test_vm_boots_the_debian_kernel_with_dev_ppp(
    ppp_vm: QemuVM, record_property: Callable[[str, object], None]
) -> None:
    kernel = find_kernel()
    assert kernel is not None
    assert ppp_vm.run(["uname", "-r"]).stdout.strip() == kernel.version
    assert kernel.version != os.uname().release
    # /dev/ppp appears only once ppp_generic is loaded: misc char 108:0.
    st = ppp_vm.run(["stat", "-c", "%F %t:%T", "/dev/ppp"]).stdout.split()
    assert st[-1] == "6c:0", st
    modules = {line.split()[0] for line in ppp_vm.read_file("/proc/modules").decode().splitlines()}
    assert {"ppp_generic", "pppoe", "pppox", "veth"} <= modules
    # The host's root is the lower layer; writes land in the VM's tmpfs only.
    assert ppp_vm.file_exists(str(Path(__file__).resolve()))
    marker = f"/etc/routerd-vm-test-{os.getpid()}"
    ppp_vm.write_file(marker, "x")
    assert ppp_vm.file_exists(marker)
    assert not Path(marker).exists()
    record_property("vm_boot_seconds", ppp_vm.boot_seconds)


def test_agent_run_times_out_and_spawned_processes_end_by_pid(ppp_vm: QemuVM) -> None:
    res = ppp_vm.run(["sleep", "30"], timeout=1.0, check=False)
    assert res.timed_out
    assert res.returncode is not None and res.returncode < 0
    res = ppp_vm.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")
    with pytest.raises(subprocess.CalledProcessError):
        ppp_vm.run(["false"])
    proc = ppp_vm.spawn(["sh", "-c", "echo started; exec sleep 300"], "/tmp/sleeper.log")
    proc.wait_for_log("started")
    assert proc.alive()
    assert proc.stop() == -15
    assert not ppp_vm.file_exists(f"/proc/{proc.pid}/status")


def test_lab_close_ends_every_process_and_namespace(ppp_vm: QemuVM) -> None:
    lab = VMPppoeLab(ppp_vm)
    lab.start_ac(accounts={"alice": PASSWORD})
    # A process the lab did not start itself, daemonized in the namespace.
    ppp_vm.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 &"], netns=lab.client_ns)
    assert lab.netns_pids(lab.ac_ns) and lab.netns_pids(lab.client_ns)
    lab.close()
    names = ppp_vm.run(["ip", "netns", "list"]).stdout
    assert lab.ac_ns not in names and lab.client_ns not in names
    assert "sleep 300" not in ppp_vm.run(["ps", "-eo", "args"]).stdout


@pytest.mark.parametrize("auth", ["pap", "chap"])
def test_pppd_session_through_pppoe_server(vm_pppoe_lab: VMPppoeLab, auth: str) -> None:
    lab, vm = vm_pppoe_lab, vm_pppoe_lab.vm
    ac = lab.start_ac(auth=auth, accounts={"alice": PASSWORD}, dns=("10.64.0.53", "10.64.0.54"))
    client = lab.start_pppd("alice", PASSWORD)
    up = client.wait_up(30)
    assert up == IpUp(up.time, "ppp0", "10.64.0.100", "10.64.0.1", ("10.64.0.53", "10.64.0.54"))
    addrs = json.loads(
        vm.run(["ip", "-j", "addr", "show", "dev", "ppp0"], netns=lab.client_ns).stdout
    )
    v4 = [a for a in addrs[0]["addr_info"] if a["family"] == "inet"]
    assert [(a["local"], a.get("address")) for a in v4] == [("10.64.0.100", "10.64.0.1")]
    ping = vm.run(["ping", "-c", "1", "-W", "5", up.remote], netns=lab.client_ns, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert AC_LOG_SUCCESS[auth] in ac.pppd_log_text()
    # The password is in a 0600 options file, never on pppd's command line.
    assert client.process is not None
    cmdline = vm.read_file(f"/proc/{client.process.pid}/cmdline")
    assert PASSWORD.encode() not in cmdline
    assert PASSWORD not in client.log_text()
    assert client.stop() == 5  # pppd: "terminated by a signal" (SIGTERM)


@pytest.mark.parametrize("auth", ["pap", "chap"])
def test_pppd_wrong_password_exits_peer_auth_failed(vm_pppoe_lab: VMPppoeLab, auth: str) -> None:
    lab = vm_pppoe_lab
    ac = lab.start_ac(auth=auth, accounts={"alice": PASSWORD})
    client = lab.start_pppd("alice", "not-" + PASSWORD)
    assert client.wait_exit(30) == PPPD_EXIT_PEER_AUTH_FAILED
    assert client.ip_ups() == []
    assert AC_LOG_FAILURE[auth] in ac.pppd_log_text()


def test_measure_pppd_session_up(
    ppp_vm: QemuVM, record_property: Callable[[str, object], None]
) -> None:
    [run] = measure_pppd_session_up(ppp_vm, runs=1)
    assert 0 < run["padi_to_ipcp"] <= run["padi_to_up"] <= run["start_to_up"] < 30
    record_property("pppd_padi_to_ipcp_seconds", run["padi_to_ipcp"])


def test_vm_close_kills_qemu_by_pid_and_removes_its_directory(tmp_path: Path) -> None:
    require_vm_prereqs(VM_TOOLS_PPPOE)
    vm = QemuVM(compile=False).start()
    pid, workdir = vm.pid, vm.workdir
    assert pid is not None and Path(f"/proc/{pid}").exists()
    vm.close()
    assert not Path(f"/proc/{pid}").exists()
    assert not workdir.exists()
    with pytest.raises(VMError):
        vm.run(["true"])


def test_initramfs_is_a_valid_cpio_with_modules_in_load_order(tmp_path: Path) -> None:
    kernel = find_kernel()
    if kernel is None:
        require_vm_prereqs()
        pytest.skip("no VM kernel")
    out = build_initramfs(kernel, tmp_path / "initramfs.gz", ["/bin/agent", "arg with space"])
    listing = subprocess.run(
        ["sh", "-c", f"gzip -dc {out} | busybox cpio -t"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"init", "bin/busybox", "dev/console", "modules.load"} <= set(listing)
    names = [m.name for m in kernel.modules()]
    assert [n for n in listing if n.startswith("modules/")] == [f"modules/{n}" for n in names]
    # Each module comes after what it depends on.
    assert names.index("ppp_generic.ko") < names.index("pppox.ko") < names.index("pppoe.ko")
    assert names.index("virtio.ko") < names.index("virtio_pci.ko")
    init = subprocess.run(
        ["sh", "-c", f"gzip -dc {out} | busybox cpio -i --to-stdout init"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "switch_root /mnt/root /bin/agent 'arg with space'" in init


# A PADI sent from the host namespace on the tap, and the first PADO back:
# the path a host-side (tun backend) client takes to the AC in the VM.
_PADI_PADO = r"""
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x8863))
s.bind((sys.argv[1], 0x8863))
mac = s.getsockname()[4]
tags = struct.pack("!HH", 0x0101, 0) + struct.pack("!HH4s", 0x0103, 4, b"rdt1")
head = struct.pack("!BBHH", 0x11, 0x09, 0, len(tags))
s.settimeout(15)
s.send(b"\xff" * 6 + mac + struct.pack("!H", 0x8863) + head + tags)
while True:
    frame = s.recv(1514)
    if frame[15] == 0x07 and b"rdt1" in frame:
        print(frame[6:12].hex(":"), frame[20:].hex())
        break
"""


def test_host_namespace_reaches_the_ac_in_the_vm(vm_pppoe_host_lab: VMHostPppoe) -> None:
    side = vm_pppoe_host_lab
    side.lab.start_ac(ac_name="vm-ac-on-nic")
    res = side.host.run([sys.executable, "-c", _PADI_PADO, side.client_if], timeout=30)
    mac, tags = res.stdout.split()
    assert mac == side.lab.vm.nic_mac
    # The AC-Name tag (0x0102) carries the name pppoe-server was given.
    assert (b"\x01\x02\x00\x0cvm-ac-on-nic").hex() in tags
