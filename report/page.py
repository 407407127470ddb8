"""The report as one self-contained HTML page: inline CSS, plots as base64 data URIs, no script."""

from __future__ import annotations

import base64
from typing import Any

import jinja2

from instructflow.report.figures import Plot

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
         padding: 0 1rem; color: #222; line-height: 1.45; }
  h1 { font-size: 1.6rem; margin-bottom: .2rem; }
  h2 { font-size: 1.2rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
  .meta { color: #666; font-size: .9rem; }
  table { border-collapse: collapse; font-size: .9rem; margin: .6rem 0; }
  th, td { border: 1px solid #ddd; padding: .3rem .6rem; text-align: left; vertical-align: top; }
  th { background: #f5f5f5; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  figure { margin: .8rem 0; }
  figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
  figcaption { color: #444; font-size: .9rem; max-width: 70rem; }
  ul.notes li { margin: .2rem 0; }
  nav a { margin-right: .8rem; font-size: .9rem; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="meta">{{ subtitle }}</p>
<nav>{% for plot in plots %}<a href="#{{ plot.id }}">{{ plot.title }}</a>{% endfor %}</nav>

<h2 id="summary">Summary</h2>
<table>
  <tr><th>measure</th>{% for name in summary_columns %}<th>{{ name }}</th>{% endfor %}</tr>
  {% for label, values in summary_rows %}
  <tr><td>{{ label }}</td>{% for value in values %}<td class="num">{{ value }}</td>{% endfor %}</tr>
  {% endfor %}
</table>
{% if notes %}
<h2 id="notes">Notes</h2>
<ul class="notes">{% for note in notes %}<li>{{ note }}</li>{% endfor %}</ul>
{% endif %}

{% for plot in plots %}
<h2 id="{{ plot.id }}">{{ plot.title }}</h2>
<figure>
  <img src="data:image/png;base64,{{ images[plot.id] }}" alt="{{ plot.title }}" data-plot="{{ plot.id }}">
  <figcaption>{{ plot.caption }}</figcaption>
</figure>
{% if plot.table %}
<table>
  <tr>{% for key in plot.table[0] %}<th>{{ key }}</th>{% endfor %}</tr>
  {% for row in plot.table %}<tr>{% for value in row.values() %}<td>{{ value }}</td>{% endfor %}</tr>{% endfor %}
</table>
{% endif %}
{% endfor %}
<p class="meta">Numbers behind every plot: figures.json next to this page. Measures: docs/report.md.</p>
</body>
</html>
"""


def render_page(
    *,
    title: str,
    subtitle: str,
    plots: list[Plot],
    summary_columns: list[str],
    summary_rows: list[tuple[str, list[Any]]],
    notes: list[str],
) -> str:
    """The HTML text of the report page (every value escaped; images inlined)."""
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    images = {plot.id: base64.b64encode(plot.png).decode("ascii") for plot in plots}
    return environment.from_string(_TEMPLATE).render(
        title=title, subtitle=subtitle, plots=plots, images=images,
        summary_columns=summary_columns, summary_rows=summary_rows, notes=notes,
    )
