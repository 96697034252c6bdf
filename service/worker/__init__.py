"""The processes behind the front end: the client of an engine process, the engine process (host), the wire
between them, restarts, CPU placement and the supervisor of `elastic serve --workers N --engines E`."""
