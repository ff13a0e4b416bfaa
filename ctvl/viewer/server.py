"""Start the viewer: one local process, loopback by default, no telemetry, no share link.

``ctvl app`` and ``python app/app.py`` both end here.
"""

from __future__ import annotations

import errno
import signal
import threading

from ctvl.errors import ConfigError
from ctvl.viewer.report_hook import ReportFn
from ctvl.viewer.upload import DEFAULT_MAX_UPLOAD_BYTES

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def check_bindable(host: str, port: int) -> None:
    """Refuse, with the reason, a host/port this process cannot listen on.

    Gradio reports every bind failure as "cannot find empty port"; binding once here first names
    the real cause (unknown host, address not on this machine, port in use, permission).
    """
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: unknown host ({exc.strerror or exc}); pass another --host"
        ) from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind(address)
        except OSError as exc:
            reason = "the port is in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc)).lower()
            raise ConfigError(
                f"cannot listen on {host}:{port} ({reason}); pass another --port or --host, "
                "or stop the program using it"
            ) from exc


def serve(
    report_fn: ReportFn | None = None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    concurrency_limit: int = 2,
    block: bool = True,
    quiet: bool = False,
    **build_kwargs,
):
    """Build and launch the viewer.

    Args:
        report_fn: the report model's hook, or None (Generate report then explains that no report
            model bundle is installed).
        host: interface to bind; 127.0.0.1 unless the person asks for another.
        port: TCP port.
        max_upload_bytes: cap on one upload; Gradio also refuses any single file over it.
        concurrency_limit: events of one kind that run at once.
        block: serve until interrupted (True), or return at once with the server running
            (False: call ``.close()`` on the result when done).
        quiet: do not print the URL.
        **build_kwargs: more options for :func:`~ctvl.viewer.app.build_app`.
    Returns:
        The launched ``gr.Blocks`` (its ``local_url`` says where it listens).
    Raises:
        ConfigError: the port is taken or the options are out of range.
    """
    if not 1 <= int(port) <= 65535:
        raise ConfigError(f"port must be 1..65535, got {port}")
    if max_upload_bytes < 1 or concurrency_limit < 1:
        raise ConfigError("the upload cap and the concurrency limit must be positive")
    check_bindable(host, int(port))
    from ctvl.viewer.app import build_app

    demo = build_app(report_fn, max_upload_bytes=max_upload_bytes, concurrency_limit=concurrency_limit, **build_kwargs)
    interrupted = _interrupt_event() if block else None
    try:
        demo.launch(
            server_name=host,
            server_port=int(port),
            share=False,
            inbrowser=False,
            max_file_size=max_upload_bytes,
            prevent_thread_lock=interrupted is not None or not block,
            show_error=True,
            quiet=quiet,
            ssr_mode=False,
            mcp_server=False,
            pwa=False,
            footer_links=["api", "settings"],
        )
    except OSError as exc:
        if interrupted is not None:
            _restore_signals(interrupted)
        stop(demo)
        reason = "the port is in use" if "Cannot find empty port" in str(exc) else " ".join(str(exc).split())
        raise ConfigError(
            f"cannot listen on {host}:{port} ({reason}); pass another --port or --host, or stop the program using it"
        ) from exc
    if interrupted is not None:
        try:
            while not interrupted.wait(0.5):  # serve until Ctrl-C / SIGTERM
                pass
        finally:
            _restore_signals(interrupted)
    if block:  # interrupted
        stop(demo)
    return demo


def _interrupt_event() -> threading.Event | None:
    """An event that SIGINT / SIGTERM set (installed before launch, so an early Ctrl-C is not lost).

    Gradio's own blocking loop waits for KeyboardInterrupt; a Ctrl-C that lands while ``launch()`` is
    still finishing its start-up can be swallowed there and the server then runs on (seen on a loaded
    machine). Outside the main thread signals cannot be caught: None, and Gradio's loop is used.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    event = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: event.set())
    event.previous = previous  # type: ignore[attr-defined]
    return event


def _restore_signals(event: threading.Event) -> None:
    for sig, handler in getattr(event, "previous", {}).items():
        signal.signal(sig, handler)


def stop(demo) -> None:
    """Close a viewer started with ``block=False`` and remove its temporary outputs."""
    demo.close()
    work_dirs = getattr(demo, "ctvl_work_dirs", None)
    if work_dirs is not None:
        work_dirs.cleanup()
