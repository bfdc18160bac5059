"""``nnscratch serve``: the draw-a-digit page and its JSON API (FastAPI on uvicorn).

``app.py`` holds the app, ``models.py`` the served models (loaded or trained at start-up),
``server.py`` the start-up, ``static/`` the page. Nothing here is imported by ``import nnscratch``.
"""
