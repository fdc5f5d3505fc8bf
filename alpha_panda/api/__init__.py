"""The read API and dashboard (FastAPI): ``create_app`` in ``alpha_panda.api.app``."""
