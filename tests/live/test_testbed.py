"""live.deploy.testbed: the testbed file's checks, the printed commands, and a testbed in a box.

The box: three network namespaces joined by veth pairs, as three machines
would be: "core" (the embedded broker, bound to the core's own address, and
the sink: the control host), "edge" (the source and the gateway) and "cloud"
(a worker of the remote executor). The core's link to the cloud is the
edge-to-cloud uplink: rate-limited with tbf at 8 mbit/s; the gateway's link
emulation is off, so the only limit is the kernel's. Each namespace runs
``python -m live.deploy.testbed run --host ...`` (cloud first, control host last),
which starts that host's roles as processes, over real sockets. A second,
shorter run without the tbf qdisc is the control. Batches of 100 KB
requests take at least their size over the rate on the uplink; without the
limit, a small fraction of that.

The uplink time of a batch is read from the records: the worker's start of
service (``batches.start_s``) minus the gateway's dispatch
(``requests.dispatched_s``). Both clocks are the same kernel clock here; on
a real testbed they are two hosts' clocks (docs/DEPLOY.md, "Clocks").
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from live.config import build_run
from live.deploy.testbed import load_testbed, main, make_plan, parse_testbed, print_commands
from spec.validation import ConfigError

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "conf" / "testbed" / "example.yaml"


# ---------------------------------------------------------------------------
# the testbed file
# ---------------------------------------------------------------------------


def example_run_config() -> dict:
    """A run config with the roles conf/testbed/example.yaml places (cam0 -> edge; executors edge, cloud x2)."""
    profile = {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002}
    return {
        "seed": 0,
        "workload": {"num_requests": 50, "sources": [{"name": "cam0", "gateway": "edge", "size_bytes": 1000, "slo_s": 1.0,
                                                     "arrivals": {"kind": "poisson", "rate_rps": 20.0}}]},
        "cluster": {"executors": [{"name": "edge", "kind": "edge", "gateway": "edge", "slots": 1, "profile": profile},
                                  {"name": "cloud", "kind": "cloud", "slots": 2, "profile": profile}],
                    "links": {"cloud": {"delay_s": 0.03, "bandwidth_MBps": 10.0}}},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"},
                   "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 4, "max_wait_s": 0.01}},
        "live": {"model": "mlp"},
    }  # fmt: skip


def example_raw() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def plan_of(raw: dict, config: dict | None = None):
    return make_plan(parse_testbed(raw), build_run(config or example_run_config()))


def test_example_places_every_role():
    plan = make_plan(load_testbed(EXAMPLE), build_run(example_run_config()))
    where = {p.name: p.host for p in plan.processes}
    assert where == {"sink": "ctrl", "worker-edge-0": "edge1", "worker-cloud-0": "cloud1", "worker-cloud-1": "cloud2",
                     "gateway-edge": "edge1", "source-cam0": "edge1"}  # fmt: skip
    assert plan.control_host == "ctrl" and plan.broker_host == "ctrl"
    assert plan.testbed.broker_url == "pulsar://10.0.0.10:6650"
    # replica indices are distinct across hosts (pulsar-lite's consumer-id workaround needs that)
    assert [p.extra for p in plan.processes if p.module == "live.roles.worker" and p.extra[1] == "cloud"] == [
        ("--executor", "cloud", "--replica", "0"), ("--executor", "cloud", "--replica", "1")]


def test_an_inline_executor_gets_no_worker_and_open_ingress_no_source():
    config = example_run_config()
    config["live"]["executors"] = {"edge": {"inline": True}}
    config["live"]["ingress"] = {"mode": "open", "clients": {"alice": {"gateway": "edge"}}}
    raw = example_raw()
    raw["roles"]["workers"].pop("edge")
    raw["roles"].pop("sources")
    names = {p.name for p in plan_of(raw, config).processes}
    assert names == {"sink", "worker-cloud-0", "worker-cloud-1", "gateway-edge"}
    with pytest.raises(ConfigError, match=r"roles\.workers\.edge.*inline"):
        plan_of(example_raw(), {**config, "live": {**config["live"], "ingress": {"mode": "replay"}}})


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda r: r["roles"]["sources"].pop("cam0"), "roles.sources.cam0"),  # a source with no host
        (lambda r: r["roles"]["gateways"].update(edge9="edge1"), "roles.gateways.edge9"),  # no such gateway
        (lambda r: r["roles"]["workers"].update(cloud={"cloud1": 1, "cloud7": 1}), "roles.workers.cloud.cloud7"),  # no such host
        (lambda r: r["roles"]["workers"].update(cloud={"cloud1": 1}), "roles.workers.cloud"),  # 1 replica, the config has 2
        (lambda r: r["roles"]["workers"].pop("edge"), "roles.workers.edge"),
        (lambda r: r["roles"].update(sink="nowhere"), "roles.sink"),
        (lambda r: r["roles"].update(servers={}), "roles.servers"),  # unknown role group
        (lambda r: r["hosts"]["edge1"].update(port=22), "hosts.edge1.port"),
        (lambda r: r["broker"].update(embedded=None, url="pulsar://127.0.0.1:6650"), "broker.url"),  # loopback, many hosts
        (lambda r: r["broker"]["embedded"].update(bind="0.0.0.0"), "broker.embedded.bind"),
        (lambda r: r["broker"].update(url="pulsar://10.0.0.10:6651"), "broker.url"),  # not the embedded broker's port
        (lambda r: r["broker"]["auth"].update(token_file="/etc/t"), "broker.auth.token_file"),  # two token sources
        (lambda r: r["hosts"]["cloud2"]["env"].update(EDGEBATCH_PULSAR_TOKEN="secret"), "hosts.cloud2.env.EDGEBATCH_PULSAR_TOKEN"),
    ],
)
def test_bad_testbed_names_the_field(edit, field):
    raw = example_raw()
    edit(raw)
    with pytest.raises(ConfigError) as error:
        plan_of(raw)
    assert error.value.field == field, str(error.value)
    assert "secret" not in str(error.value)


def test_serverless_pool_needs_a_host():
    config = example_run_config()
    config["cluster"]["executors"].append({"name": "lambda", "kind": "serverless", "memory_mb": 1024, "keep_alive_s": 1,
                                           "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002}})  # fmt: skip
    config["cluster"]["links"]["lambda"] = {"delay_s": 0.01, "bandwidth_MBps": 50}
    with pytest.raises(ConfigError) as error:
        plan_of(example_raw(), config)
    assert error.value.field == "roles.pools.lambda"
    raw = example_raw()
    raw["roles"]["pools"] = {"lambda": "cloud2"}
    plan = plan_of(raw, config)
    assert [(p.name, p.host) for p in plan.processes if p.module == "live.roles.pool"] == [("pool-lambda", "cloud2")]


def test_print_gives_ssh_lines_without_the_token(tmp_path, monkeypatch, capsys):
    config_path = tmp_path / "run_config.json"
    config_path.write_text(json.dumps(example_run_config()))
    monkeypatch.setenv("EDGEBATCH_PULSAR_TOKEN", "tok-s3cret")
    assert main(["print", "--testbed", str(EXAMPLE), "--config", str(config_path), "--run-id", "rtest"]) == 0
    out = capsys.readouterr().out
    assert "tok-s3cret" not in out
    lines = [line for line in out.splitlines() if line.startswith("ssh ")]
    for name, address in [("live.roles.sink", "10.0.0.10"), ("live.roles.gateway", "10.0.0.11"), ("live.roles.source", "10.0.0.11"),
                          ("live.roles.worker", "10.0.0.21"), ("live.roles.worker", "10.0.0.22"), ("live.deploy.testbed broker", "10.0.0.10")]:  # fmt: skip
        assert any(f"edgebatch@{address} " in line and f"-m {name} " in line for line in lines), (name, address)
    assert "--run-id rtest" in out and "--broker pulsar://10.0.0.10:6650" in out
    assert "-m live.deploy.testbed start" in out and "--expect sink,worker-edge-0,worker-cloud-0,worker-cloud-1,gateway-edge,source-cam0" in out
    assert sum("--host " in line for line in lines) == 4  # the one-command-per-host alternative
    # every role line runs under a POSIX shell as printed: quoted once, backgrounded, logged
    role_lines = [line for line in lines if " -m live.roles.sink " in line or " -m live.roles.worker " in line]
    assert role_lines and all(line.endswith("< /dev/null &'") for line in role_lines)


def test_print_reads_a_token_file_on_the_host():
    raw = example_raw()
    raw["broker"]["auth"] = {"token_file": "/etc/edgebatch/pulsar.token"}
    raw["broker"]["embedded"] = None
    raw["broker"]["url"] = "pulsar+ssl://pulsar.example.org:6651"
    raw["broker"]["tls"] = {"trust_certs_file": "/etc/edgebatch/ca.pem"}
    plan = plan_of(raw)
    assert plan.broker_host is None
    out = print_commands(plan, config_path="run.json", testbed_path="tb.yaml", run_id="r1")
    role_lines = [line for line in out.splitlines() if " -m live." in line and line.startswith("ssh ")]
    assert role_lines and all('EDGEBATCH_PULSAR_TOKEN="$(cat /etc/edgebatch/pulsar.token)"' in line for line in role_lines)
    assert all("SendEnv=EDGEBATCH_PULSAR_TOKEN" not in line for line in role_lines)  # the token comes from the file
    assert all("SendEnv=EDGEBATCH_RUN_KEY" in line for line in role_lines)  # the run key from the operator's shell
    workers = [line for line in role_lines if "-m live.roles.worker" in line or "-m live.roles.sink" in line]
    assert all("--tls-trust-certs-file /etc/edgebatch/ca.pem" in line for line in workers)
    assert "-m live.deploy.testbed broker" not in out


def test_print_rejects_a_bad_testbed(tmp_path, capsys):
    config_path = tmp_path / "run_config.json"
    config_path.write_text(json.dumps(example_run_config()))
    raw = example_raw()
    raw["roles"]["sources"] = {"cam1": "edge1"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    assert main(["print", "--testbed", str(bad), "--config", str(config_path)]) == 2
    assert "roles.sources.cam1" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# the testbed in a box
# ---------------------------------------------------------------------------

RATE = "8mbit"
RATE_BPS = 1_000_000.0  # bytes per second of 8 mbit/s
SIZE = 100_000  # bytes per request: the link's time dominates


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=20)


class Box:
    """Namespaces core, edge, cloud; veths edge-core and cloud-core; the broker's address on core's lo."""

    def __init__(self):
        self.prefix = "ebt" + secrets.token_hex(3)
        self.ns = {"core": f"{self.prefix}c", "edge": f"{self.prefix}e", "cloud": f"{self.prefix}k"}
        octet = 200 + secrets.randbelow(50)
        self.net = f"10.{octet}"
        self.broker_ip = f"{self.net}.0.1"
        self.address = {"core": self.broker_ip, "edge": f"{self.net}.1.1", "cloud": f"{self.net}.2.1"}
        self.uplink = f"{self.prefix}kb"  # core's end of the cloud link: its egress is the edge-to-cloud direction
        self.created_ns: list[str] = []
        self.created_links: list[tuple[str, str]] = []  # (namespace, device) of one end of each veth

    def ip(self, ns: str, *args: str) -> None:
        _sh("ip", "netns", "exec", ns, "ip", *args)

    def setup(self) -> None:
        for ns in self.ns.values():
            _sh("ip", "netns", "add", ns)
            self.created_ns.append(ns)
            self.ip(ns, "link", "set", "lo", "up")
        core = self.ns["core"]
        self.ip(core, "addr", "add", f"{self.broker_ip}/32", "dev", "lo")
        for role, subnet, tag in (("edge", 1, "e"), ("cloud", 2, "k")):
            ns = self.ns[role]
            here, there = f"{self.prefix}{tag}a", f"{self.prefix}{tag}b"
            _sh("ip", "link", "add", here, "netns", ns, "type", "veth", "peer", "name", there, "netns", core)
            self.created_links.append((ns, here))
            self.ip(ns, "addr", "add", f"{self.net}.{subnet}.1/24", "dev", here)
            self.ip(ns, "link", "set", here, "up")
            self.ip(core, "addr", "add", f"{self.net}.{subnet}.2/24", "dev", there)
            self.ip(core, "link", "set", there, "up")
            self.ip(ns, "route", "add", f"{self.broker_ip}/32", "via", f"{self.net}.{subnet}.2")

    def limit(self) -> None:
        _sh("ip", "netns", "exec", self.ns["core"], "tc", "qdisc", "add", "dev", self.uplink, "root", "tbf",
            "rate", RATE, "burst", "32kbit", "latency", "400ms")  # fmt: skip

    def unlimit(self) -> None:
        _sh("ip", "netns", "exec", self.ns["core"], "tc", "qdisc", "del", "dev", self.uplink, "root")

    def qdisc(self) -> str:
        return _sh("ip", "netns", "exec", self.ns["core"], "tc", "qdisc", "show", "dev", self.uplink).stdout

    def teardown(self) -> list[str]:
        problems = []
        for ns, dev in self.created_links:  # deleting one end deletes the pair
            result = _sh("ip", "netns", "exec", ns, "ip", "link", "del", dev, check=False)
            if result.returncode != 0 and "Cannot find device" not in result.stderr and "does not exist" not in result.stderr:
                problems.append(f"veth {dev}: {result.stderr.strip()}")
        for ns in reversed(self.created_ns):
            result = _sh("ip", "netns", "del", ns, check=False)
            if result.returncode != 0:
                problems.append(f"netns {ns}: {result.stderr.strip()}")
        return problems


@pytest.fixture(scope="module")
def box():
    if shutil.which("ip") is None or shutil.which("tc") is None:
        pytest.skip("the testbed in a box needs iproute2 (ip, tc)")
    if os.geteuid() != 0:
        pytest.skip("the testbed in a box needs root to create network namespaces (run the tests as root)")
    try:
        from live.wire.broker import find_binary

        find_binary()
    except FileNotFoundError as error:
        pytest.skip(f"pulsar-lite broker binary not found ({error})")
    probe = "ebtp" + secrets.token_hex(3)
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=20)
    if result.returncode != 0:
        pytest.skip(f"cannot create network namespaces here (ip netns add: {result.stderr.strip()})")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=20)
    b = Box()
    try:
        try:
            b.setup()
            b.limit()
        except subprocess.CalledProcessError as error:
            pytest.skip(f"cannot build the namespaces and links ({' '.join(error.cmd)}: {error.stderr.strip()})")
        yield b
    finally:
        problems = b.teardown()
        assert not problems, problems


def box_config(num_requests: int, rate_rps: float) -> dict:
    return {
        "seed": 7,
        "workload": {"num_requests": num_requests,
                     "sources": [{"name": "cam", "gateway": "edge", "size_bytes": SIZE, "slo_s": 30.0,
                                  "arrivals": {"kind": "poisson", "rate_rps": rate_rps}}]},
        "cluster": {"executors": [{"name": "cloud", "kind": "cloud", "slots": 1,
                                   "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002}}],
                    "links": {"cloud": {"delay_s": 0.0, "bandwidth_MBps": RATE_BPS / 1e6}}},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"},
                   "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 4, "max_wait_s": 0.05}},
        "live": {"model": "mlp", "emulate_links": False, "timeout_s": 45, "startup_timeout_s": 30},
    }  # fmt: skip


def box_testbed(box: Box, port: int) -> dict:
    return {
        "name": "box",
        "hosts": {role: {"address": address} for role, address in box.address.items()},
        "broker": {"embedded": {"host": "core", "port": port, "http_port": port + 1}},
        "roles": {"sink": "core", "sources": {"cam": "edge"}, "gateways": {"edge": "edge"}, "workers": {"cloud": "cloud"}},
        "start_lead_s": 0.5,
        "stop_grace_s": 1.0,
    }


def run_in_box(box: Box, tmp: Path, name: str, config: dict, port: int, deadline_s: float = 60.0):
    """One run: ``live.deploy.testbed run`` in each namespace; returns (requests, batches, summary)."""
    folder = tmp / name
    folder.mkdir()
    config_path = folder / "config.json"
    config_path.write_text(json.dumps(config))
    testbed_path = folder / "testbed.yaml"
    testbed_path.write_text(yaml.safe_dump(box_testbed(box, port)))
    run_id = f"{name}{secrets.token_hex(4)}"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
    env["EDGEBATCH_RUN_KEY"] = os.urandom(32).hex()  # the same run key on every host, as an operator exports it
    procs: dict[str, subprocess.Popen] = {}
    logs = {}
    try:
        for host in ("cloud", "edge", "core"):  # the control host last: the ready messages wait for it
            logs[host] = open(folder / f"testbed-{host}.log", "wb")
            procs[host] = subprocess.Popen(
                ["ip", "netns", "exec", box.ns[host], sys.executable, "-m", "live.deploy.testbed", "run", "--testbed", str(testbed_path),
                 "--config", str(config_path), "--run-id", run_id, "--host", host, "--out", str(folder / host)],
                stdin=subprocess.DEVNULL, stdout=logs[host], stderr=subprocess.STDOUT, cwd=ROOT, env=env,
            )  # fmt: skip
        try:
            code = procs["core"].wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            code = None
        for host in ("edge", "cloud"):
            try:
                procs[host].wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        text = {h: (folder / f"testbed-{h}.log").read_text(errors="replace")[-3000:] for h in procs}
        assert code == 0, f"control host: exit {code}\n" + "\n".join(f"--- {h}\n{t}" for h, t in text.items())
    finally:
        for proc in procs.values():  # only what we started, by pid
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for f in logs.values():
            f.close()
    out = folder / "core"
    return pd.read_parquet(out / "requests.parquet"), pd.read_parquet(out / "batches.parquet"), json.loads((out / "summary.json").read_text())


def uplink_times(requests: pd.DataFrame, batches: pd.DataFrame) -> pd.DataFrame:
    """Per batch: bytes, the uplink time (worker's start of service minus the gateway's dispatch), transfer_s."""
    done = requests[requests["completed_s"].notna()]
    per_batch = done.groupby("batch_id").agg(dispatched_s=("dispatched_s", "first"), size=("request_id", "size"),
                                             transfer_s=("transfer_s", "median"))  # fmt: skip
    per_batch = per_batch.join(batches.set_index("batch_id")[["start_s"]])
    per_batch["bytes"] = per_batch["size"] * SIZE
    per_batch["uplink_s"] = per_batch["start_s"] - per_batch["dispatched_s"]
    per_batch["floor_s"] = per_batch["bytes"] / RATE_BPS  # the time the bytes need at the link's rate
    return per_batch


@pytest.fixture(scope="module")
def box_runs(box, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("box")
    started = time.perf_counter()
    assert "tbf" in box.qdisc()
    limited = run_in_box(box, tmp, "tbf", box_config(50, 7.0), port=16650)
    limited_s = time.perf_counter() - started
    box.unlimit()
    assert "tbf" not in box.qdisc()
    control = run_in_box(box, tmp, "free", box_config(40, 20.0), port=16660)
    return {"limited": limited, "control": control, "limited_wall_s": limited_s, "wall_s": time.perf_counter() - started}


def test_box_run_completes_over_real_sockets(box_runs):
    for key in ("limited", "control"):
        requests, batches, summary = box_runs[key]
        assert summary["complete"] is True, key
        assert summary["completed"] == len(requests), (key, summary)
        assert int(batches["size"].sum()) == len(requests)
        assert (requests["executor"] == "cloud").all()


def test_box_uplink_shows_the_link_rate(box_runs, capsys):
    limited = uplink_times(*box_runs["limited"][:2])
    control = uplink_times(*box_runs["control"][:2])
    ratio = limited["uplink_s"] / limited["floor_s"]
    per_mb_limited = float((limited["uplink_s"] / limited["bytes"]).median() * 1e6)
    per_mb_control = float((control["uplink_s"] / control["bytes"]).median() * 1e6)
    with capsys.disabled():
        print(f"\n[testbed box] {RATE} tbf: {len(limited)} batches, uplink median {limited['uplink_s'].median() * 1e3:.0f} ms "
              f"(floor size/rate median {limited['floor_s'].median() * 1e3:.0f} ms; ratio median {ratio.median():.2f}, min {ratio.min():.2f}); "
              f"{per_mb_limited:.3f} s/MB; transfer_s median {limited['transfer_s'].median() * 1e3:.1f} ms")
        print(f"[testbed box] no limit: {len(control)} batches, uplink median {control['uplink_s'].median() * 1e3:.1f} ms "
              f"(floor at {RATE} would be {control['floor_s'].median() * 1e3:.0f} ms); {per_mb_control:.3f} s/MB; "
              f"wall {box_runs['limited_wall_s']:.1f}s + {box_runs['wall_s'] - box_runs['limited_wall_s']:.1f}s")  # fmt: skip
    # with the limit: no batch crosses faster than the rate allows (tbf's 4 KB burst and framing aside) ...
    assert ratio.min() >= 0.85, limited
    assert ratio.median() >= 0.95, limited
    # ... and far slower than the same namespaces without it
    assert per_mb_limited > 4 * per_mb_control, (per_mb_limited, per_mb_control)
    assert float((control["uplink_s"] / control["floor_s"]).median()) < 0.3, control
    # the records' own transfer_s carries the link's time (uplink to the worker's receipt, and back)
    assert float((limited["transfer_s"] / limited["floor_s"]).median()) >= 0.9, limited
    assert float(limited["transfer_s"].median()) > 10 * float(control["transfer_s"].median()), (limited, control)
