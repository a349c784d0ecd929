"""``gafu web``: serve the web page (Gradio) on this machine.

    gafu web                                  # http://127.0.0.1:7860
    gafu web --port 8080 --concurrency 2      # two jobs at once
    gafu web --host 0.0.0.0                   # reachable from the network: only on a trusted one

Needs the extra: pip install gafu[web]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile

from ..errors import GafuError
from .common import add_device_arg, positive_int, resolve_device


def file_size(text: str) -> int:
    from ..web.jobs import parse_file_size

    try:
        return parse_file_size(text)
    except GafuError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, got {value}")
    return value


def check_address(host: str, port: int) -> None:
    """Fail in one line, before anything loads, where ``host:port`` cannot be served (a port in
    use, a name that does not resolve, an address not on this machine)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise GafuError(f"cannot serve on {host}:{port}: the host does not resolve ({exc})", argument="host") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            s.bind(address)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise GafuError(f"cannot serve on {host}:{port}: {why}", argument="port") from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "web",
        help="a local web page: stylize with live preview, fast, compare, diagnose",
        description="Serve gafu's web page (Gradio) on this machine. Needs: pip install gafu[web]",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only); no share link is ever made")
    p.add_argument("--port", type=port_number, default=7860, help="port (default 7860)")
    p.add_argument("--max-file-size", type=file_size, default="20mb", metavar="SIZE",
                   help="largest upload, e.g. 20mb, 500kb (default 20mb)")
    p.add_argument("--max-pixels", type=positive_int, default=40_000_000, metavar="N",
                   help="largest uploaded image in pixels, width x height (default 40000000)")
    p.add_argument("--max-size", type=positive_int, default=1024, metavar="PX",
                   help="largest optimization size a visitor may ask for (default 1024)")
    p.add_argument("--concurrency", type=positive_int, default=1, help="jobs running at once (default 1)")
    p.add_argument("--queue", type=positive_int, default=8,
                   help="jobs that may wait; more are refused with a message (default 8)")
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise GafuError("the web page needs Gradio: pip install gafu[web]")
    device = resolve_device(args.device)
    check_address(args.host, args.port)
    workdir = tempfile.mkdtemp(prefix="gafu-web-")
    # Before Gradio is imported: no analytics, uploads and caches inside the app's own folder.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = os.path.join(workdir, "gradio")
    # This process's temporary files too (onnxruntime writes $TMPDIR/.ses when it is imported, and
    # anything using Python's tempfile): inside the app's folder, removed with it.
    own_tmp = os.path.join(workdir, "tmp")
    os.makedirs(own_tmp)
    saved_tmp = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = own_tmp
    tempfile.tempdir = own_tmp
    from ..web.app import build_app, launch
    from ..web.jobs import Limits

    def stop(signum, frame):  # SIGTERM (service managers, docker stop): shut down like Ctrl+C, cleaning up
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    limits = Limits(max_file_bytes=args.max_file_size, max_pixels=args.max_pixels, max_size=args.max_size)
    try:
        demo = build_app(limits=limits, workdir=workdir, concurrency=args.concurrency, queue_size=args.queue,
                         device=device, release_memory=True)
        print(f"gafu web: serving on http://{args.host}:{args.port} (Ctrl+C stops; files in {workdir})",
              file=sys.stderr)
        try:
            launch(demo, host=args.host, port=args.port, block=True, quiet=True)
        except OSError as exc:  # the port taken between the check and the server's own bind
            raise GafuError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}", argument="port") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(workdir, ignore_errors=True)
        if saved_tmp[0] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_tmp[0]
        tempfile.tempdir = saved_tmp[1]
    return 0
