"""retro-router: routes Retrospect's events through admin-written rules."""

__version__ = "0.1.0"
