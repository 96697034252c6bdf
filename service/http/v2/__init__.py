"""The Open Inference Protocol (KServe v2, REST) over the same engine, admission, limits and metrics as /v1.

- `identity`: the served model's v2 name (its checkpoint directory) and version (a prefix of its weights' hash);
- `request_body` / `response_body`: the wire format, JSON and the binary tensor extension (pure, no HTTP);
- `metadata`: server and model metadata;
- `infer`: one inference request, through service.http.intake (the /v1 path);
- `routes`: the HTTP routes, with the protocol's `{"error": "..."}` answers.
"""
