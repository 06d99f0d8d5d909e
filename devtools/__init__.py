"""Dev tooling, not shipped in the image: the synthetic book generator (``synth``), the prism loader (``prism``),
the Schedule P benchmark (``schedule_p``), the book they load (``book``) and the fast COPY loader (``bulk``).

Run from the project root, e.g. ``python -m devtools.synth --help``.
"""
