"""The kinds of target, and each one's names and ports as the tiers set them (environment, from make).

Environment: compose: E2E_COMPOSE_PROJECT (default channels-stack, `make up`'s), E2E_HTTP_PORT and
E2E_HTTPS_PORT (default: where that project published Nginx), EXTRA_VARS; vm: VM_CONTAINER (default
channels-stack-vm), VM_HTTP_PORT (default 8081), VM_HTTPS_PORT (default 8444), VM_VARS; cluster:
CLUSTER_NAME (default channels-stack-cluster), CLUSTER_NET (default 10.82.82, the network's first three
octets), CLUSTER_HTTP_PORT (default 8082), CLUSTER_VARS. A new kind is one class and one entry here.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .cluster import ClusterTarget
from .compose import ComposeTarget
from .target import Target
from .vm import VmTarget


def compose_from_environment() -> ComposeTarget:
    port, https_port = os.environ.get("E2E_HTTP_PORT"), os.environ.get("E2E_HTTPS_PORT")
    return ComposeTarget(
        os.environ.get("E2E_COMPOSE_PROJECT", "channels-stack"),
        int(port) if port else None,
        os.environ.get("EXTRA_VARS") or None,
        https_port=int(https_port) if https_port else None,
    )


def vm_from_environment() -> VmTarget:
    return VmTarget(
        os.environ.get("VM_CONTAINER", "channels-stack-vm"),
        int(os.environ.get("VM_HTTP_PORT", "8081")),
        os.environ.get("VM_VARS") or None,
        https_port=int(os.environ.get("VM_HTTPS_PORT", "8444")),
    )


def cluster_from_environment() -> ClusterTarget:
    return ClusterTarget(
        os.environ.get("CLUSTER_NAME", "channels-stack-cluster"),
        os.environ.get("CLUSTER_NET", "10.82.82"),
        int(os.environ.get("CLUSTER_HTTP_PORT", "8082")),
        os.environ.get("CLUSTER_VARS") or None,
    )


KINDS: dict[str, Callable[[], Target]] = {
    "compose": compose_from_environment,
    "vm": vm_from_environment,
    "cluster": cluster_from_environment,
}


def make_target(kind: str) -> Target:
    """The target of kind `kind` as the environment names it; ValueError for an unknown kind."""
    try:
        factory = KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown target {kind!r}; known: {', '.join(sorted(KINDS))}") from None
    return factory()
