"""The embedded teacher's engine: a pinned GGUF model from a PyPI package, run in-process by
llama.cpp (`llama`). Ray-free; the Ray Serve shell that puts it on HTTP is
`instructflow.actors.teacher_serve`.
"""
