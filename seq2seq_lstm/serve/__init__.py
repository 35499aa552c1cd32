"""`s2s serve`: translation and suggestion over HTTP (docs/serving.md).

- :mod:`.limits`: the bounds of a request and of the server
- :mod:`.schemas`: request and response bodies (OpenNMT-py's REST API and the native one)
- :mod:`.batcher`: one decoding thread per model, batching across requests, a bounded queue
- :mod:`.models`: run directories loaded by id
- :mod:`.app`: the FastAPI app
"""
