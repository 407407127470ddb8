from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
from instructflow.config import CONFIG_DIR, Config, ConfigError, load_config, parse_config

MINIMAL = "categories:\n  general: {count: 3}\n"


def test_shipped_configs_load():
    for name in ("quickstart.yaml", "reference.yaml"):
        config = load_config(CONFIG_DIR / name)
        assert config.categories and config.source_dir == CONFIG_DIR


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys |= _keys(ann, f"{prefix}{name}.")
    return keys


def _yaml_keys(node, prefix=""):
    keys = set()
    for key, value in node.items():
        keys.add(prefix + key)
        if isinstance(value, dict) and key not in ("prices", "categories"):
            keys |= _yaml_keys(value, f"{prefix}{key}.")
    return keys


def test_reference_config_documents_every_key():
    data = yaml.safe_load((CONFIG_DIR / "reference.yaml").read_text())
    missing = _keys(Config) - _yaml_keys(data)
    assert not missing, f"config/reference.yaml lacks {sorted(missing)}"
    general = load_config(CONFIG_DIR / "reference.yaml").categories["general"]
    assert set(type(general).model_fields) == set(data["categories"]["general"])


def test_unknown_keys_are_named_with_file_and_line():
    text = "run:\n  output_dir: x\n  sed: 3\ncategories:\n  general: {count: 3, bacth_size: 2}\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "my.yaml")
    message = str(err.value)
    assert "my.yaml:3: run.sed: unknown key" in message
    assert "my.yaml:5: categories.general.bacth_size: unknown key" in message


@pytest.mark.parametrize(
    "text,needle",
    [
        ("novelty: {threshold: 1.5}\n" + MINIMAL, "novelty.threshold"),
        ("queues: {judge: 0}\n" + MINIMAL, "queues.judge"),
        ("teacher: {max_attempts: many}\n" + MINIMAL, "teacher.max_attempts"),
        ("teacher: {api_key_env: sk-abc123}\n" + MINIMAL, "NAME of an environment variable"),
        ("judge: {rules: {banned_regexes: ['(']}}\n" + MINIMAL, "not a valid regular expression"),
        ("teacher: {budget: {max_cost_usd: 3}}\n" + MINIMAL, "needs per-model prices"),
        ("categories: {}\n", "at least one category"),
        ("categories:\n  nonsense: {count: 1}\n", "unknown category 'nonsense'"),
        ("categories:\n  general: {}\n", "categories.general.count"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("run:\n  seed: 1\n   bad: 2\n", "my.yaml:3"),
    ],
)
def test_bad_values_are_rejected_with_the_key(text, needle):
    with pytest.raises(ConfigError) as err:
        parse_config(text, "my.yaml")
    assert needle in str(err.value)


def test_missing_file_is_named(tmp_path: Path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_run_id_is_stable_and_follows_the_config():
    a, b = parse_config(MINIMAL), parse_config(MINIMAL)
    assert a.run_id == b.run_id and len(a.run_id) == 12
    assert parse_config(MINIMAL, overrides={"run.output_dir": "elsewhere"}).run_id == a.run_id
    assert parse_config(MINIMAL, overrides={"categories.general.count": 4}).run_id != a.run_id
    # Where the actors run does not change what the run produces: it resumes on any layout.
    assert parse_config(MINIMAL, overrides={"placement.writer": "writer"}).run_id == a.run_id


def test_placement_names_only_the_stages_it_places():
    with pytest.raises(ConfigError, match="placement.novelty: unknown key"):  # that is novelty.resource
        parse_config("placement: {novelty: gpu}\n" + MINIMAL, "my.yaml")


def test_effective_config_holds_no_secret(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    dumped = yaml.safe_dump(parse_config(MINIMAL).effective())
    assert "sk-secret-value" not in dumped and "OPENAI_API_KEY" in dumped


def test_reference_config_shows_the_defaults():
    """The reference is documentation: every value in it is the default the code uses."""
    reference = load_config(CONFIG_DIR / "reference.yaml").model_dump(exclude={"categories"})
    defaults = Config.model_validate({"categories": {"general": {"count": 1}}}).model_dump(exclude={"categories"})
    assert reference == defaults
