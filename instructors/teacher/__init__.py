"""Teacher access, in three parts kept apart.

The client side is this package's modules: the OpenAI-compatible client, retries, rate limits,
token accounting and the topics file. `embedded` is the engine of the embedded teacher (a model run
in-process by llama.cpp), and `stub` the test server that every test and benchmark talks to.
"""
