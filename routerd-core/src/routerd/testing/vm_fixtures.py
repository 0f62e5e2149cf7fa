"""pytest fixtures for the qemu test VM (kernel PPP, real ``pppd``).

Registered by the routerd pytest plugin (:mod:`routerd.testing.plugin`):

- ``ppp_vm`` (session scope): one booted :class:`~routerd.testing.vm.QemuVM`
  for the whole session (about 4 s to boot), killed by PID at the end. Tests
  using it are marked ``vm``.
- ``vm_pppoe_lab``: a :class:`~routerd.testing.vm_pppoe.VMPppoeLab` in that VM
  (namespaces ``ac-…`` and ``cl-…`` joined by ``ac0`` ↔ ``wan0``), closed at
  teardown whatever the test did: its processes by PID, then its namespaces.

Both skip when the VM cannot run here (not root, no qemu, no kernel under
``.tools/vm``: run ``scripts/setup.sh``), and fail instead under ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from routerd.testing.vm import QemuVM
from routerd.testing.vm import require_vm_prereqs
from routerd.testing.vm_pppoe import VMPppoeLab

__all__ = ["VM_TOOLS_PPPOE", "ppp_vm", "vm_pppoe_lab"]

#: Host programs the PPPoE lab runs inside the VM (from the host's root).
VM_TOOLS_PPPOE = ("pppd", "pppoe-server", "pppoe", "tcpdump", "ping")


@pytest.fixture(scope="session")
def ppp_vm() -> Iterator[QemuVM]:
    """Boot the test VM once per session; yield it; kill it by PID at the end."""
    require_vm_prereqs(VM_TOOLS_PPPOE)
    with QemuVM() as vm:
        yield vm


@pytest.fixture
def vm_pppoe_lab(ppp_vm: QemuVM) -> Iterator[VMPppoeLab]:
    """Yield a fresh PPPoE lab in the session's VM; everything in it ends at teardown."""
    with VMPppoeLab(ppp_vm) as lab:
        yield lab
