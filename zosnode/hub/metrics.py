"""Hub counters, rendered in the Prometheus text exposition format."""

from __future__ import annotations

from collections import Counter

from zosnode.http.server import FAILURE_LABELS
from zosnode.hub.registry import Summary


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class HubMetrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.bytes_served: Counter[str] = Counter()
        self.published: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        # Connections refused or cut by the HTTP server, by why (a bounded
        # set: zosnode.http.server.FAILURE_LABELS).
        self.connections_failed: Counter[str] = Counter()

    def observe(self, route: str, method: str, status: int, sent: int) -> None:
        self.requests[(route, method, status)] += 1
        self.bytes_served[route] += sent

    def connection_failed(self, label: str) -> None:
        self.connections_failed[label] += 1

    def render(self, open_connections: int, registry: Summary | None) -> str:
        """The text; `registry` None when the database cannot be read now."""
        out = [
            "# HELP zos_hub_requests_total HTTP requests answered, by route and status.",
            "# TYPE zos_hub_requests_total counter",
        ]
        for (route, method, status), n in sorted(self.requests.items()):
            out.append(f'zos_hub_requests_total{{route="{_label(route)}",'
                       f'method="{_label(method)}",status="{status}"}} {n}')
        out += ["# HELP zos_hub_bytes_served_total Response body bytes written, by route.",
                "# TYPE zos_hub_bytes_served_total counter"]
        for route, n in sorted(self.bytes_served.items()):
            out.append(f'zos_hub_bytes_served_total{{route="{_label(route)}"}} {n}')
        out += ["# HELP zos_hub_open_connections Client connections open now.",
                "# TYPE zos_hub_open_connections gauge",
                f"zos_hub_open_connections {open_connections}"]
        out += ["# HELP zos_hub_connections_failed_total Connections refused or cut, by reason.",
                "# TYPE zos_hub_connections_failed_total counter"]
        for label in sorted({*FAILURE_LABELS, *self.connections_failed}):
            out.append(f'zos_hub_connections_failed_total{{reason="{_label(label)}"}} '
                       f"{self.connections_failed[label]}")
        out += ["# HELP zos_hub_published_total Objects accepted by the publish API, by kind.",
                "# TYPE zos_hub_published_total counter"]
        for kind, n in sorted(self.published.items()):
            out.append(f'zos_hub_published_total{{kind="{_label(kind)}"}} {n}')
        out += ["# HELP zos_hub_refused_total Publications and heartbeats refused, by reason.",
                "# TYPE zos_hub_refused_total counter"]
        for reason, n in sorted(self.refused.items()):
            out.append(f'zos_hub_refused_total{{reason="{_label(reason)}"}} {n}')
        out += ["# HELP zos_hub_registry_up Whether the node registry database answered.",
                "# TYPE zos_hub_registry_up gauge",
                f"zos_hub_registry_up {0 if registry is None else 1}"]
        if registry is None:
            return "\n".join(out) + "\n"
        out += ["# HELP zos_hub_nodes Nodes known by their latest heartbeat.",
                "# TYPE zos_hub_nodes gauge",
                f"zos_hub_nodes {registry.count}",
                "# HELP zos_hub_nodes_stale Nodes not heard from within the stale time.",
                "# TYPE zos_hub_nodes_stale gauge",
                f"zos_hub_nodes_stale {registry.stale}",
                "# HELP zos_hub_nodes_by_state Nodes by the state of their latest heartbeat.",
                "# TYPE zos_hub_nodes_by_state gauge"]
        for state, n in sorted(registry.by_state.items()):
            out.append(f'zos_hub_nodes_by_state{{state="{_label(state)}"}} {n}')
        out += ["# HELP zos_hub_nodes_by_release Nodes by the release they report running.",
                "# TYPE zos_hub_nodes_by_release gauge"]
        for (channel, release), n in sorted(registry.by_release.items()):
            out.append(f'zos_hub_nodes_by_release{{channel="{_label(channel)}",'
                       f'release="{release}"}} {n}')
        return "\n".join(out) + "\n"
