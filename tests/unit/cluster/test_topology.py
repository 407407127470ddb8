import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
from instructflow.cluster.topology import stage_placement
from instructflow.config import parse_config


def test_placement_asks_each_replica_for_one_unit_of_its_stage_resource():
    config = parse_config("placement: {instructor: teachers, writer: disk}\ncategories:\n  general: {count: 3}\n")
    assert stage_placement(config, "instructor") == {"resources": {"teachers": 1}}
    assert stage_placement(config, "writer") == {"resources": {"disk": 1}}
    assert stage_placement(config, "judge") == {}  # null: anywhere, as before
