"""Dataset reports: what a finished run's rows look like, as an HTML page, PNG plots and JSON.

A layer of its own above `actors` (it reads the committed parts through `actors.core`) and below
`cluster` (whose CLI registers the `report` command). Nothing here starts Ray.
"""
