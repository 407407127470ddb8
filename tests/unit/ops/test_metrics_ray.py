"""The Ray path of the metrics module: an actor records every metric, the node's port exports them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from instructflow.actors.metrics import METRICS

# Runs in a child process so that its Ray (with a fixed metrics port) is independent of any other
# Ray in the test session. Prints {series name: [label names]} once every series is exported.
SCRIPT = textwrap.dedent("""
    import json, socket, sys, time, urllib.request
    import ray
    from instructflow.actors import metrics

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(address="local", num_cpus=1, include_dashboard=False, _metrics_export_port=port)

    @ray.remote(num_cpus=0.1)
    class Recorder:
        def record(self):
            values = {"category": "general", "model": "m", "stage": "novel", "reason": "near",
                      "status_class": "429", "shard": 0, "queue": "judge"}
            for spec in metrics.METRICS:
                labels = {k: values[k] for k in spec.labels}
                if spec.key == "rejects":
                    labels["stage"] = "novelty"
                call = {"counter": metrics.inc, "gauge": metrics.set_gauge, "histogram": metrics.observe}
                call[spec.kind](spec.key, 2, **labels)
            return True

    ray.get(Recorder.remote().record.remote())
    wanted = {series for spec in metrics.METRICS for series in spec.series()}
    deadline, found = time.monotonic() + 60, {}
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        found = {}
        for line in text.splitlines():
            if line.startswith("ray_instructflow_"):
                name, _, rest = line.partition("{")
                found[name] = sorted(p.split("=")[0] for p in rest.split("}")[0].split(",") if "=" in p)
        if wanted <= set(found):
            break
        time.sleep(0.5)
    print(json.dumps({"port": port, "found": found}))
    ray.shutdown()
""")


@pytest.mark.ray
def test_actor_metrics_are_exported_under_the_ray_prefix() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])["found"]
    wanted = {series for spec in METRICS for series in spec.series()}
    missing = wanted - set(found)
    assert not missing, f"not exported within 60 s: {sorted(missing)}"
    assert set(found) == wanted, f"unexpected series: {sorted(set(found) - wanted)}"
    for spec in METRICS:
        labels = set(found[spec.series()[0]])
        assert set(spec.labels) <= labels, spec.key
        assert "SessionName" in labels  # what the dashboard's session filter reads
