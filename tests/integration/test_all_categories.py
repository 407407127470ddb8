"""config/all-categories.yaml: every registered category through the real pipeline and stub teacher."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import yaml

import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
from instructflow.cluster.driver import run
from instructflow.config import CONFIG_DIR, load_config, parse_config
from instructflow.instructors.registry import categories

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_every_category_reaches_its_count(ray_local, stub_teacher, tmp_path):
    shipped = load_config(CONFIG_DIR / "all-categories.yaml")
    assert set(shipped.categories) == set(categories())
    data = shipped.effective()
    data["run"].update(output_dir=str(tmp_path / "out"), display="plain")
    data["teacher"].update(kind="openai", base_url=stub_teacher.base_url, model="stub", api_key_env=None,
                           timeout_s=10, backoff_base_s=0.05)
    data["topics"]["file"] = None
    data["writer"].update(rows_per_part=50, flush_interval_s=1.0)
    progress = run(parse_config(yaml.safe_dump(data)))
    rows = pq.read_table(tmp_path / "out" / "data").to_pylist()
    counts = {c: sum(r["category"] == c for r in rows) for c in shipped.categories}
    assert counts == {c: p.count for c, p in shipped.categories.items()}
    assert len({r["id"] for r in rows}) == len(rows)
    assert progress.all_done()
