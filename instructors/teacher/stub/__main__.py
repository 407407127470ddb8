"""`python -m instructflow.instructors.teacher.stub`: serves the stub teacher until interrupted."""

from instructflow.instructors.teacher.stub.server import main

main()
