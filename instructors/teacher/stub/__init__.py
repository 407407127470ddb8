"""The stub teacher: a real OpenAI-compatible HTTP server on 127.0.0.1 with switchable faults, that
every test and benchmark talks to instead of a paid API.

`server` is the HTTP server and its faults; `replies` perturbs the recorded example replies so that
the pipeline's novelty stage does not reject them all. Run it as a process with
`python -m instructflow.instructors.teacher.stub --port 8099`.
"""

from instructflow.instructors.teacher.stub.server import Faults, StubTeacher

__all__ = ["Faults", "StubTeacher"]
