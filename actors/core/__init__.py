"""Ray-free cores of the pipeline stages; unit tests drive these directly, without Ray."""
