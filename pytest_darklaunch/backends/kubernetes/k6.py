"""The traffic Job's generator for a request mix: k6 with a script of ours.

Fortio sends one URL without a body; a spec with ``traffic.targets``, ``targets_file`` or a
body needs a generator that takes a mix. k6 (``grafana/k6``, pinned) runs an open-loop
``constant-arrival-rate`` scenario at ``traffic.rate``; each iteration sends the next target of
a weighted cycle computed here (smooth weighted round robin: every window of the cycle holds
each target in proportion to its weight, as the local generator's mix does). The targets,
their headers and bodies, and the script travel in one Secret (headers and bodies may hold
credentials), mounted into the pod.

>>> cycle([3.0, 1.0])
[0, 0, 1, 0]
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from pytest_darklaunch.core.spec import Spec

K6_IMAGE = "grafana/k6:1.1.0"
MOUNT = "/darklaunch"
CYCLE_MAX = 1000

# Runs in k6's goja runtime: ES2015+, the k6/http module; the init context reads the mix.
SCRIPT = """\
import http from 'k6/http';
import encoding from 'k6/encoding';
import exec from 'k6/execution';

const mix = JSON.parse(open(__ENV.DARKLAUNCH_MIX || '/darklaunch/targets.json'));
const base = __ENV.DARKLAUNCH_URL;
const bodies = mix.targets.map((t) => (t.body ? encoding.b64decode(t.body, 'std') : null));

export const options = {
  discardResponseBodies: true,
  scenarios: {
    mix: {
      executor: 'constant-arrival-rate',
      // iterations per 1000 s, so that fractional rates stay exact and evenly spread
      rate: Number(__ENV.DARKLAUNCH_RATE),
      timeUnit: '1000s',
      duration: __ENV.DARKLAUNCH_DURATION,
      preAllocatedVUs: Number(__ENV.DARKLAUNCH_VUS),
      maxVUs: 4 * Number(__ENV.DARKLAUNCH_VUS),
    },
  },
};

export default function () {
  const i = mix.cycle[exec.scenario.iterationInTest % mix.cycle.length];
  const t = mix.targets[i];
  http.request(t.method, base + t.path, bodies[i], {
    headers: t.headers,
    timeout: __ENV.DARKLAUNCH_TIMEOUT,
    tags: { name: t.name },
  });
}
"""


def uses_k6(spec: Spec) -> bool:
    """A mix (several targets, or a body) needs k6; one bodiless URL stays with Fortio."""
    mix = spec.traffic.mix
    return not mix.single or any(t.body for t in mix.targets)


def cycle(weights: list[float]) -> list[int]:
    """Target indexes in a cycle where each appears in proportion to its weight (smooth
    weighted round robin), at most :data:`CYCLE_MAX` long."""
    total = sum(weights)
    smallest = min(weights)
    length = min(CYCLE_MAX, max(len(weights), math.ceil(total / smallest)))
    credit = [0.0] * len(weights)
    out = []
    for _ in range(length):
        credit = [c + w for c, w in zip(credit, weights, strict=True)]
        best = max(range(len(weights)), key=lambda i: credit[i])
        credit[best] -= total
        out.append(best)
    return out


def mix_document(spec: Spec, host: str | None) -> dict[str, Any]:
    """``targets.json``: every target with its headers (the mirror host as Host unless the
    target names its own) and base64 body, and the cycle."""
    targets = []
    for target in spec.traffic.mix.targets:
        headers = dict(target.headers) or dict(spec.traffic.headers)
        if host and not any(k.lower() == "host" for k in headers):
            headers["Host"] = host
        targets.append({
            "name": target.name,
            "method": target.method,
            "path": target.path,
            "headers": headers,
            "body": base64.b64encode(target.body).decode() if target.body else "",
        })
    weights = [t.weight for t in spec.traffic.mix.targets]
    return {"targets": targets, "cycle": cycle(weights)}


def mix_secret(spec: Spec, metadata: dict[str, Any], host: str | None) -> dict[str, Any]:
    """The Secret the k6 pod mounts: the script and the mix."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": {
            "load.js": SCRIPT,
            "targets.json": json.dumps(mix_document(spec, host), separators=(",", ":")),
        },
    }


def k6_pod_parts(
    spec: Spec, secret: str, url: str, duration_s: int, vus: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The k6 container and the pod's volumes."""
    env = {
        "DARKLAUNCH_URL": url,
        "DARKLAUNCH_RATE": str(max(1, round(spec.traffic.rate_rps * 1000))),
        "DARKLAUNCH_DURATION": f"{duration_s}s",
        "DARKLAUNCH_VUS": str(vus),
        "DARKLAUNCH_TIMEOUT": f"{max(1, math.ceil(spec.traffic.timeout_s * 1000))}ms",
        "DARKLAUNCH_MIX": f"{MOUNT}/targets.json",
    }
    container = {
        "name": "k6",
        "image": K6_IMAGE,
        "args": ["run", "--quiet", "--no-summary", f"{MOUNT}/load.js"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "volumeMounts": [{"name": "mix", "mountPath": MOUNT, "readOnly": True}],
    }
    return container, [{"name": "mix", "secret": {"secretName": secret}}]
