"""Ray-free generation side of instructflow.

Everything here runs in a plain Python process: the candidate record, the instructor base class and
registry, one module per data category, prompt rendering, reply parsing and the teacher client.
Nothing in this package imports `actors` or `cluster`.
"""
