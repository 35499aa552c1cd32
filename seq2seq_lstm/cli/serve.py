"""``s2s serve``: translation and suggestion over HTTP (a thin layer over :mod:`seq2seq_lstm.serve`).

Everything a bad option can break is refused before the models load and the port opens: the API key
file, the limits, the address. The search options are `s2s translate`'s own (the same click
parameters), so they read and check the same; sampling is not served (docs/serving.md says why).
"""

from __future__ import annotations

import click

from .options import (
    PathType,
    check_engine,
    checkpoint_option,
    device_option,
    dtype_option,
    engine_option,
    set_threads,
    threads_option,
)
from .translate import translate as _translate

# `s2s translate` options that set the served search (and batching, and sentence splitting): generation.*
# overrides, and split_sentences, a keyword of Translator.from_checkpoint/from_export
SEARCH_OPTIONS = (
    "beam_size", "n_best", "length_penalty", "alpha", "min_len", "max_len_a", "max_len_b", "no_repeat_ngram",
    "ban_unk", "batch_tokens", "max_input_len", "shortlist", "split_sentences",
)  # fmt: skip


def search_options(f):
    """Attach `s2s translate`'s parameter objects for :data:`SEARCH_OPTIONS` to the command ``f``."""
    params = {p.name: p for p in _translate.params}
    f.params.extend(params[name] for name in SEARCH_OPTIONS)
    return f


@search_options
@click.command("serve")
@checkpoint_option(
    multiple=True,
    help="Run directory of a translation or language model; repeat to serve several (ids 0, 1, ...).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True, help="TCP port.")
@click.option(
    "--api-key-file",
    type=PathType(exists=True, dir_okay=False),
    help="File holding the API key; requests must then send 'Authorization: Bearer KEY' (401 without).",
)
@click.option(
    "--report-align", is_flag=True, help="Add alignments to OpenNMT-py answers (align, align_score)."
)
@click.option("--max-body-bytes", type=click.IntRange(1), default=1 << 20, show_default=True,
              help="Largest request body (413 above).")  # fmt: skip
@click.option("--max-sentences", type=click.IntRange(1), default=256, show_default=True,
              help="Texts per request (413 above).")  # fmt: skip
@click.option("--max-chars", type=click.IntRange(1), default=100_000, show_default=True,
              help="Characters per request (413 above).")  # fmt: skip
@click.option("--queue-sentences", type=click.IntRange(1), default=2048, show_default=True,
              help="Sentences queued or decoding per model; more is 503 with Retry-After.")  # fmt: skip
@click.option("--timeout", type=click.FloatRange(0, 3600, min_open=True), default=30.0, show_default=True,
              help="Seconds a request may wait for its answer (504 after, its work dropped).")  # fmt: skip
@click.option("--batch-wait-ms", type=click.FloatRange(0, 1000), default=5.0, show_default=True,
              help="How long a worker waits for more requests to join a batch.")  # fmt: skip
@click.option("--max-connections", type=click.IntRange(1), default=1024, show_default=True,
              help="Open connections at most (503 above).")  # fmt: skip
@click.option("--access-log/--no-access-log", default=False, help="Log every request (uvicorn's access log).")
@threads_option
@device_option
@engine_option
@dtype_option("Weight type: int8 is the fastest on a CPU (docs/decoding.md).")
def serve(checkpoints, host, port, api_key_file, report_align, max_body_bytes, max_sentences, max_chars,
          queue_sentences, timeout, batch_wait_ms, max_connections, access_log, threads, device, engine,
          dtype, **generation) -> None:  # fmt: skip
    """Serve models over HTTP: OpenNMT-py's REST API (/translator/translate) and a native one (/v1/...).

    Binds the loopback address unless --host says otherwise. SIGTERM or Ctrl-C stops taking requests,
    finishes those in flight, then exits. API and deployment: docs/serving.md.
    """
    from ..serve.limits import Limits

    limits = Limits(max_body_bytes=max_body_bytes, max_sentences=max_sentences, max_chars=max_chars,
                    queue_sentences=queue_sentences, timeout_s=timeout,
                    batch_wait_s=batch_wait_ms / 1000)  # fmt: skip
    api_key = _read_api_key(api_key_file) if api_key_file else None
    overrides = {k: v for k, v in generation.items() if v is not None}
    check_engine(engine, device, dtype)
    set_threads(threads)
    from ..serve.models import load_models

    models = load_models(list(checkpoints), limits, dtype=dtype, device=device, overrides=overrides,
                         threads=threads, engine=engine)  # fmt: skip
    sock = _listen(host, port)
    try:
        _run(sock, models, limits, api_key, report_align, max_connections, access_log)
    finally:
        sock.close()


def _run(sock, models, limits, api_key, report_align, max_connections, access_log) -> None:
    import uvicorn

    from ..serve.app import create_app

    app = create_app(models, limits, api_key=api_key, report_align=report_align)
    host, port = sock.getsockname()[:2]
    for m in models:
        click.echo(f"model {m.model_id} ({m.task}): {m.path}", err=True)
    click.echo(f"serving on http://{_url_host(host)}:{port} (Ctrl-C or SIGTERM stops)", err=True)
    config = uvicorn.Config(app, log_level="info", access_log=access_log, limit_concurrency=max_connections,
                            timeout_graceful_shutdown=int(limits.timeout_s) + 1)  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])


def _read_api_key(path: str) -> bytes:
    from pathlib import Path

    from ..errors import UserError

    try:
        key = Path(path).read_bytes().strip()
    except OSError as e:
        raise UserError(f"cannot read --api-key-file {path}: {e.strerror or e}") from None
    if not key:
        raise UserError(f"--api-key-file {path} is empty; write the key in it")
    return key


def _listen(host: str, port: int):
    """A listening socket on ``host:port``, or one clear error (a taken port, an unknown address)."""
    import socket

    from ..errors import UserError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as e:
        raise UserError(f"cannot listen on {host}:{port}: {getattr(e, 'strerror', None) or e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
