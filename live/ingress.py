"""The ``live.ingress`` section: replay a workload (experiments) or serve registered clients (open ingress).

::

    live:
      ingress:
        mode: replay                  # replay (default): the sources replay the workload's schedule;
                                      # open: no sources; registered clients send requests (docs/PROTOCOL.md)
        clients:                      # open mode: who may send, by name (no '/' or whitespace)
          alice: {gateway: edge, slo_s: 0.5, key_env: ALICE_KEY}
          bob: {}                     # the only gateway, no deadline, signed with the run key
        max_skew_s: 1.0               # a request's arrival is its client's send time, clamped to
                                      # [received - max_skew_s, received] on the gateway's clock
        max_id_chars: 128             # the longest request id a client may choose
        drain_s: 5.0                  # after the stop, how long the sink waits for the gateways' last records

A client's key is never in the config (a config file is written to the
run's folder): ``key_env`` names the environment variable, on the gateway's
host, that holds it as hex (16 bytes or more); without ``key_env`` the
client signs with the run's key (``EDGEBATCH_RUN_KEY``). With
``live.authenticate: false`` clients send unsigned messages and are told
apart by name only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from live.wire.messages import KEY_ENV
from spec.validation import ConfigError, check_choice, check_int_at_least, check_positive

__all__ = ["ClientSpec", "IngressSettings", "ingress_settings", "client_key"]

MODES = ("replay", "open")
_KEYS = ("mode", "clients", "max_skew_s", "max_id_chars", "drain_s")
_CLIENT_KEYS = ("gateway", "slo_s", "key_env")


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientSpec:
    """One registered open-ingress client: its gateway, its requests' SLO, where its key is."""

    name: str
    gateway: str
    slo_s: float = math.inf
    #: the environment variable holding this client's HMAC key (hex); None: the run's key
    key_env: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class IngressSettings:
    """How requests enter a live run (``live.ingress``)."""

    mode: str = "replay"
    clients: Mapping[str, ClientSpec] = field(default_factory=dict)
    max_skew_s: float = 1.0
    max_id_chars: int = 128
    drain_s: float = 5.0

    @property
    def open(self) -> bool:
        return self.mode == "open"

    def clients_of(self, gateway: str) -> dict[str, ClientSpec]:
        return {name: c for name, c in self.clients.items() if c.gateway == gateway}


def _mapping(where: str, value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(where, value, "a mapping")
    return dict(value)


def _slo_s(where: str, value) -> float:
    if value is None or value == "inf":
        return math.inf
    return check_positive(where, value, finite=False)


def _client(name, raw, gateways: list[str]) -> ClientSpec:
    where = f"live.ingress.clients.{name}"
    if not isinstance(name, str) or not name or "/" in name or any(c.isspace() for c in name):
        raise ConfigError(where, name, "a client name without '/' or whitespace (it becomes part of a topic name)")
    raw = _mapping(where, raw)
    for key, value in raw.items():
        if key not in _CLIENT_KEYS:
            raise ConfigError(f"{where}.{key}", value, "one of " + ", ".join(_CLIENT_KEYS), choices=_CLIENT_KEYS, near=key)
    gateway = raw.get("gateway", gateways[0] if len(gateways) == 1 else None)
    if gateway not in gateways:
        raise ConfigError(f"{where}.gateway", gateway, "a gateway of the run (those of the workload's sources): " + ", ".join(gateways))
    key_env = raw.get("key_env")
    if key_env is not None and (not isinstance(key_env, str) or not key_env or key_env == KEY_ENV):
        raise ConfigError(f"{where}.key_env", key_env, f"the name of an environment variable (not {KEY_ENV}: leave it out for the run key)")
    return ClientSpec(name=name, gateway=gateway, slo_s=_slo_s(f"{where}.slo_s", raw.get("slo_s")), key_env=key_env)


def ingress_settings(raw, gateways: list[str]) -> IngressSettings:
    """The checked ``live.ingress`` section (``ConfigError`` naming the field); ``gateways``: the run's."""
    raw = _mapping("live.ingress", raw)
    for key, value in raw.items():
        if key not in _KEYS:
            raise ConfigError(f"live.ingress.{key}", value, "one of " + ", ".join(_KEYS), choices=_KEYS, near=key)
    mode = check_choice("live.ingress.mode", raw.get("mode", "replay"), MODES)
    clients = _mapping("live.ingress.clients", raw.get("clients"))
    if mode == "open" and not clients:
        raise ConfigError("live.ingress.clients", raw.get("clients"), "at least one client in open mode ({name: {gateway, slo_s, key_env}})")
    if mode == "replay" and clients:
        raise ConfigError("live.ingress.clients", sorted(clients), "none in replay mode (set live.ingress.mode: open to serve clients)")
    return IngressSettings(
        mode=mode,
        clients={name: _client(name, value, gateways) for name, value in clients.items()},
        max_skew_s=check_positive("live.ingress.max_skew_s", raw.get("max_skew_s", 1.0)),
        max_id_chars=check_int_at_least("live.ingress.max_id_chars", raw.get("max_id_chars", 128), 1),
        drain_s=check_positive("live.ingress.drain_s", raw.get("drain_s", 5.0)),
    )


def client_key(client: ClientSpec, run_key: bytes | None, environ=os.environ) -> bytes | None:
    """The key ``client`` signs with: its own (``key_env``), else the run's; ``ConfigError`` if its variable is unset or bad."""
    if run_key is None:
        return None  # an unauthenticated run: unsigned messages
    if client.key_env is None:
        return run_key
    where = f"live.ingress.clients.{client.name}.key_env"
    text = environ.get(client.key_env)
    if not text:
        raise ConfigError(where, client.key_env, "an environment variable set, on the gateway's host, to the client's key (hex)")
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError(where, client.key_env, "a variable holding hex (32 or more hex digits)") from None
    if len(key) < 16:
        raise ConfigError(where, client.key_env, "a variable holding at least 16 bytes (32 hex digits)")
    return key
