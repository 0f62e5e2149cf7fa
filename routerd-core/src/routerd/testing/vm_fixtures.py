"""pytest fixtures for the qemu test VM (kernel PPP, real ``pppd``).

Registered by the routerd pytest plugin (:mod:`routerd.testing.plugin`):

- ``ppp_vm`` (session scope): one booted :class:`~routerd.testing.vm.QemuVM`
  for the whole session (about 4 s to boot), killed by PID at the end. qemu
  runs in a host namespace of its own, where the tap ``vmtap0`` is the other
  end of the VM's NIC. Tests using it are marked ``vm``.
- ``vm_pppoe_lab``: a :class:`~routerd.testing.vm_pppoe.VMPppoeLab` in that VM
  (namespaces ``ac-…`` and ``cl-…`` joined by ``ac0`` ↔ ``wan0``), closed at
  teardown whatever the test did: its processes by PID, then its namespaces.
- ``vm_pppoe_host_lab``: a :class:`VMHostPppoe`: the AC namespace in the VM
  owns the VM's NIC, and the client side is the host namespace with
  ``vmtap0``, where a client that needs no kernel PPP (the ``tun`` backend)
  runs on the host.

All skip when the VM cannot run here (not root, no qemu, no kernel under
``.tools/vm``: run ``scripts/setup.sh``), and fail instead under ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from routerd.testing.netns import Netns
from routerd.testing.netns import require_netns_prereqs
from routerd.testing.vm import QemuVM
from routerd.testing.vm import require_vm_prereqs
from routerd.testing.vm_pppoe import VMPppoeLab

__all__ = ["VM_TOOLS_PPPOE", "VMHostPppoe", "ppp_vm", "vm_pppoe_host_lab", "vm_pppoe_lab"]

#: Host programs the PPPoE lab runs inside the VM (from the host's root).
VM_TOOLS_PPPOE = ("pppd", "pppoe-server", "pppoe", "tcpdump", "ping")
# The host namespace of each VM booted here, by name (QemuVM keeps the name).
_host_namespaces: dict[str, Netns] = {}


@dataclass(frozen=True)
class VMHostPppoe:
    """An AC in the VM and the host namespace facing it.

    :ivar lab: the VM side; start the AC with ``lab.start_ac()``.
    :ivar host: the host namespace where qemu runs and the client goes.
    :ivar client_if: the client's interface in *host* (``vmtap0``, up).
    """

    lab: VMPppoeLab
    host: Netns
    client_if: str


@pytest.fixture(scope="session")
def ppp_vm() -> Iterator[QemuVM]:
    """Boot the test VM once per session; yield it; kill it by PID at the end."""
    require_netns_prereqs(["ip"])
    require_vm_prereqs(VM_TOOLS_PPPOE)
    with Netns("rdt-vm") as host, QemuVM(host_netns=host.name) as vm:
        host.link_set(vm.NIC_TAP, True)
        _host_namespaces[host.name] = host
        try:
            yield vm
        finally:
            _host_namespaces.pop(host.name, None)


@pytest.fixture
def vm_pppoe_lab(ppp_vm: QemuVM) -> Iterator[VMPppoeLab]:
    """Yield a fresh PPPoE lab in the session's VM; everything in it ends at teardown."""
    with VMPppoeLab(ppp_vm) as lab:
        yield lab


@pytest.fixture
def vm_pppoe_host_lab(ppp_vm: QemuVM) -> Iterator[VMHostPppoe]:
    """Yield an AC namespace in the VM holding its NIC, and the host side of it."""
    assert ppp_vm.host_netns is not None
    host = _host_namespaces[ppp_vm.host_netns]
    with VMPppoeLab(ppp_vm, host_client=True) as lab:
        yield VMHostPppoe(lab=lab, host=host, client_if=ppp_vm.NIC_TAP)
