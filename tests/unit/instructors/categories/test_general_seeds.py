import json

import pytest

import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
from instructflow.cluster.driver import preflight
from instructflow.config import ConfigError, parse_config
from instructflow.instructors.categories.general import read_seed_tasks
from tests.conftest import SHARED


def test_self_instruct_seed_tasks_load_and_reach_the_prompt():
    path = SHARED / "data" / "self-instruct" / "seed_tasks.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is not beside this checkout")
    tasks = read_seed_tasks(path)
    assert len(tasks) == 175
    config = parse_config(f"categories:\n  general: {{count: 1, seed_file: {path}, seed_examples: 2}}\n")
    from instructflow.instructors.registry import get_instructor

    general = get_instructor("general")(config.categories["general"], topics=["tea"])
    values = general.choose()
    prompt = general.template.render({**general.common_values(), **values})
    assert len(values["examples"]) == 2 and all(e in prompt for e in values["examples"])


@pytest.mark.parametrize(
    "content,needle",
    [("", "has no tasks"), ('{"instruction": "ok"}\nnot json\n', ":2: not JSON"),
     ('{"name": "x"}\n', ":1: needs a non-empty string field `instruction`")],
)
def test_bad_seed_files_are_named_with_the_line(tmp_path, content, needle):
    path = tmp_path / "seeds.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=needle):
        read_seed_tasks(path)


def test_preflight_reports_seed_file_problems_as_config_errors(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("teacher: {api_key_env: null}\ncategories:\n  general: {count: 1, seed_file: missing.jsonl}\n")
    from instructflow.config import load_config

    with pytest.raises(ConfigError) as err:
        preflight(load_config(cfg))
    assert "categories.general" in str(err.value) and str(tmp_path / "missing.jsonl") in str(err.value)
    (tmp_path / "missing.jsonl").write_text(json.dumps({"instruction": "Name three rivers."}) + "\n")
    preflight(load_config(cfg))
