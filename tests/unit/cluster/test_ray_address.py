import socket

from instructflow.cluster.driver import answers, choose_address


def test_a_recorded_cluster_that_answers_is_joined():
    assert choose_address("10.0.0.5:6379", lambda address: True) is None  # Ray joins it


def test_a_recorded_cluster_that_is_gone_gives_a_local_ray_and_says_so(capsys):
    assert choose_address("10.0.0.5:6379", lambda address: False) == "local"
    err = capsys.readouterr().err
    assert "nothing answers at 10.0.0.5:6379" in err and "--address" in err


def test_nothing_recorded_leaves_the_choice_to_ray():
    assert choose_address(None, lambda address: False) is None


def test_answers_tells_a_listening_port_from_a_closed_one():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert answers(f"127.0.0.1:{port}")
    assert not answers(f"127.0.0.1:{port}", timeout_s=1)  # closed now
    assert not answers("not-an-address")
