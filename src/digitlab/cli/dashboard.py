"""`digitlab-dashboard [STUDY] [--port 8080] [--host 127.0.0.1]`: optuna-dashboard on an Optuna study.

STUDY is a study folder (the sweep dir holding `study.journal`, e.g. logs/studies/mlp), a journal file, or an
Optuna storage URL (sqlite:///..., postgresql://...). Without it: the newest study under logs/ (--log-dir).
The server listens on 127.0.0.1 only unless --host says otherwise; stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from digitlab.errors import DigitlabError
from digitlab.process import apply_process_policy
from digitlab.sweeps.study import JOURNAL, open_storage


def find_storage(study: str | None, log_dir: Path) -> str:
    """A storage URL or journal file path for STUDY, or the newest journal under `log_dir`."""
    if study and "://" in study:
        return study
    if study:
        path = Path(study)
        journal = path / JOURNAL if path.is_dir() else path
        if not journal.is_file():
            raise DigitlabError(
                f"{study!r} is not an Optuna study: pass a study folder holding {JOURNAL} (e.g. "
                "logs/studies/mlp), a journal file, or a storage URL such as sqlite:///study.db."
            )
        return str(journal)
    journals = sorted(log_dir.glob(f"**/{JOURNAL}"), key=lambda p: p.stat().st_mtime)
    if not journals:
        raise DigitlabError(
            f"no Optuna study under {str(log_dir)!r} (no {JOURNAL}): run a search first, e.g. "
            "digitlab-train hparams_search=mlp, or pass a study folder or storage URL."
        )
    return str(journals[-1])


def check_listenable(host: str, port: int) -> None:
    """DigitlabError unless a server can listen on `host:port` now (a port in use, a host not of this
    machine): said before the study is opened, not as the server's traceback."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as err:
        raise DigitlabError(
            f"--host {host} --port {port}: cannot listen there ({err.strerror or err}). Pick a free port "
            "(e.g. --port 8081), or a host name or address of this machine."
        ) from None


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        apply_process_policy()
    parser = argparse.ArgumentParser(prog="digitlab-dashboard", description=__doc__.splitlines()[0])
    parser.add_argument(
        "study", nargs="?", help="study folder, journal file or storage URL (default: newest)"
    )
    parser.add_argument("--log-dir", default="logs", type=Path, help="where to look for the newest study")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default=8080, type=int)
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"argument --port: {args.port} is not a port number (1 to 65535)")
    try:
        check_listenable(args.host, args.port)
        location = find_storage(args.study, args.log_dir)
        # A reader: nothing written or locked (a study in a read-only folder opens); a journal damaged
        # before its end is refused in one paragraph.
        storage = open_storage(location, repair=False)
    except DigitlabError as err:
        print(f"digitlab-dashboard: {err}", file=sys.stderr)
        return 1  # 2 is argparse's, for a command line it cannot parse
    from optuna_dashboard import run_server

    print(f"optuna-dashboard on {location}: http://{args.host}:{args.port}/dashboard/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        run_server(storage, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
