"""Ray-free generation side of instructflow.

Everything here runs in a plain Python process: the candidate record, the instructor base class and
registry, the categories (one module each, in `categories/`), prompt rendering, reply parsing and the
teacher client.
Nothing in this package imports `actors` or `cluster`.
"""
