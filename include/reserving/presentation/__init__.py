"""The presentation layer: every medium (PDF, the Reserving page, Markdown, e-mail, log and Slack text) renders plain
data through one formatting module, one Jinja2 environment over ``templates/`` and one PDF helper.

Cheap to import: the package itself loads nothing; ``instruction`` needs the standard library only.
"""
