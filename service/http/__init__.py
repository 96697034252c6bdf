"""The HTTP front end: the FastAPI app (`main.create_app`), its routes, request intake and answers."""
