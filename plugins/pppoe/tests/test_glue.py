"""The daemon glue that needs no namespace: the spec, the password file, the
host configuration, the plugin registration, and the password as a secret
of the daemon runtime."""

from __future__ import annotations

from collections.abc import Iterator
import json
from pathlib import Path
import stat

import pydantic
import pytest
from routerd.config import load_config
from routerd.daemon.runtime import DaemonPaths
from routerd.daemon.runtime import DaemonRuntime
from routerd.plugins import load_plugins
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd_pppoe.apply import HostConfig
from routerd_pppoe.apply import desired_config
from routerd_pppoe.events import NetworkUp
from routerd_pppoe.spec import PasswordFileError
from routerd_pppoe.spec import PPPoESessionSpec
from routerd_pppoe.spec import read_password

PASSWORD = "Glue-pw-91c2"


def spec(**fields: object) -> PPPoESessionSpec:
    base: dict[str, object] = {
        "interface": "wan0",
        "username": "user@isp",
        "passwordFile": "/etc/routerd/isp.password",
    }
    base.update(fields)
    return PPPoESessionSpec.model_validate(base)


def test_spec_defaults() -> None:
    s = spec()
    assert (s.auth_method, s.mtu, s.ipv6, s.backend) == ("both", 1492, False, "auto")
    assert (s.default_route, s.route_metric, s.use_peer_dns, s.dns_file) == (True, 100, True, None)
    assert (s.lcp_echo_interval, s.lcp_echo_failure, s.holdoff, s.maxfail) == (10.0, 3, 5.0, 0)
    assert (s.discovery_timeout, s.discovery_attempts) == (1.0, 4)
    assert s.auth_methods == frozenset({"pap", "chap"})
    assert spec(authMethod="chap").auth_methods == frozenset({"chap"})
    assert spec(lcpEchoInterval="500ms", holdoff="1m").holdoff == 60.0


@pytest.mark.parametrize(
    "fields",
    [
        {"passwordFile": "relative/pw"},
        {"password": "inline"},  # no such field: the password is never in the config
        {"authMethod": "mschap"},
        {"mtu": 1508},
        {"mtu": 100},
        {"backend": "pppd"},
        {"interface": "a/b"},
        {"lcpEchoInterval": "50ms"},
        {"lcpEchoFailure": 0},
        {"username": "tab\there"},
        {"dnsFile": "/run/x", "usePeerDNS": False},
        {"discoveryTimeout": "2m"},
        {"acName": ""},
    ],
)
def test_spec_rejects(fields: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        spec(**fields)


def test_password_file_modes_and_content(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text(PASSWORD + "\nsecond line ignored\n")
    path.chmod(0o600)
    assert read_password(str(path)) == PASSWORD.encode()
    path.chmod(0o640)
    assert read_password(str(path)) == PASSWORD.encode()
    path.chmod(0o644)
    with pytest.raises(PasswordFileError) as exc:
        read_password(str(path))
    message = str(exc.value)
    assert "readable by every user (mode 0644)" in message and "chmod o-r" in message
    assert PASSWORD not in message
    path.chmod(0o600)
    path.write_text("\n")
    with pytest.raises(PasswordFileError, match="holds no password"):
        read_password(str(path))
    path.write_text("x" * 256)
    with pytest.raises(PasswordFileError, match="longer than 255"):
        read_password(str(path))
    with pytest.raises(PasswordFileError, match="not a regular file"):
        read_password(str(tmp_path))
    with pytest.raises(PasswordFileError, match="No such file"):
        read_password(str(tmp_path / "missing"))
    crlf = tmp_path / "crlf"
    crlf.write_bytes(b"abc\r\n")
    crlf.chmod(stat.S_IRUSR)
    assert read_password(str(crlf)) == b"abc"


def test_desired_config() -> None:
    up = NetworkUp("198.51.100.7", "198.51.100.1", ("192.0.2.53",), 1492, 1492)
    want = desired_config(spec(dnsFile="/run/isp.resolv", routeMetric=7), "ppp-isp", up, None)
    assert want == HostConfig(
        ifname="ppp-isp",
        address="198.51.100.7/32",
        peer="198.51.100.1",
        mtu=1492,
        default_route=7,
        dns_file="/run/isp.resolv",
        dns_text="# written by routerd pppoe-client for ppp-isp\nnameserver 192.0.2.53\n",
    )
    none = desired_config(spec(defaultRoute=False, usePeerDNS=False), "ppp-isp", up, "fe80::1")
    assert none.default_route is None and none.dns_file is None
    assert none.ipv6_address == "fe80::1/64"
    # A peer claiming our own address is not a peer.
    same = NetworkUp("10.0.0.1", "10.0.0.1", (), 1492, 1492)
    assert desired_config(spec(), "ppp-isp", same, None).peer is None
    assert desired_config(spec(), "ppp-isp", None, None) == HostConfig()
    assert HostConfig.from_json({"dnsFile": "relative", "ifname": 3}) == HostConfig()


def test_plugin_registers_pppoe_client() -> None:
    plugins = load_plugins(allow={"pppoe"})
    kind = plugins.kinds["pppoe-client"]
    assert kind.kind == "PPPoESession" and kind.spec_model is PPPoESessionSpec
    assert kind.all_commands() == ("reload", "renew", "stop", "reconnect")


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[DaemonRuntime]:
    password = tmp_path / "pw"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    # An interface that does not exist: the engine reads the password, then waits.
    config = router_config(
        resource(
            "PPPoESession",
            "isp",
            {"interface": "rdt-nonexist", "username": "u", "passwordFile": str(password)},
        )
    )
    plugins = load_plugins(allow={"pppoe"})
    path = write_config(tmp_path / "router.yaml", config)
    res = load_config(path, plugins).find("isp", "pppoe-client")
    assert res is not None
    paths = DaemonPaths.default("pppoe-client", "isp", tmp_path / "run", tmp_path / "state")
    rt = DaemonRuntime(plugins, plugins.kinds["pppoe-client"], path, res, paths)
    rt.start()
    try:
        yield rt
    finally:
        rt.stop()


def test_the_password_file_content_is_a_secret_of_the_runtime(runtime: DaemonRuntime) -> None:
    # The spec holds only the path: the runtime learns the password from the engine.
    assert runtime.scrubber.text(f"login with {PASSWORD}") == "login with ***"
    runtime.emit("routerd.pppoe.client.auth.failed", reason="x", message=f"pw {PASSWORD}")
    runtime.resource_state.set_observed({"oops": PASSWORD})
    status = json.dumps(runtime.status().to_dict())
    events = (runtime.paths.state_dir / "events.jsonl").read_text()
    assert PASSWORD not in status and PASSWORD not in events
    res = runtime.status().resources[0]
    assert res.phase == "Pending"
