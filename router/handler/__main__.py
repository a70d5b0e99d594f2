"""``python -m router.handler EVENT ARG...``: the handler, as the console script."""

from router.handler import run

run()
