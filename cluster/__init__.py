"""How the pipeline is laid out and run on a Ray cluster: config schema, driver, CLI, job helpers."""
