"""The creator's preview web app (``microdrama preview``): play, check, edit, re-render and approve episodes."""

from .app import create_app, run_preview, serve

__all__ = ["create_app", "run_preview", "serve"]
