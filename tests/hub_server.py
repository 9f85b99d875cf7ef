"""A small, real HTTP server that speaks the part of the Hugging Face Hub protocol huggingface_hub uses.

Why: the download tests must exercise huggingface_hub's own code (HEAD metadata, redirects to a
CDN, Range resumption, cache layout, error headers) without the Internet and without mocks.

Layout served (as read in huggingface_hub 2.x ``file_download.py``/``hf_api.py``/``utils/_http.py``):

- ``HEAD|GET /{repo_id}/resolve/{revision}/{filename}``: for regular ("git") files, 200 with
  ``ETag`` (git blob sha1), ``X-Repo-Commit`` and ``Content-Length``; for LFS files, a 302 to the
  "CDN" with ``X-Linked-Etag`` (sha256), ``X-Linked-Size`` and ``X-Repo-Commit``, like the Hub.
  Errors are 404 with the Hub's ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
  ``EntryNotFound``).
- ``GET /cdn/{sha256}``: the LFS blob, served on the ``localhost`` spelling of the address so that
  huggingface_hub treats it as another host (it stops following redirects there, as with a CDN).
  ``Range: bytes=N-`` gets a 206.
- ``GET /api/models/{repo_id}/tree/{revision}``: the recursive file listing (``list_repo_files``).
- ``GET /api/models/{repo_id}/revision/{revision}``: a minimal ``model_info`` with ``siblings``.

Every request is recorded in ``server.requests`` so tests can count network traffic.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import unquote, urlsplit


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class HubFile:
    data: bytes
    lfs: bool = True
    # Fault injection, to test how broken transfers are reported:
    #   "short": GET sends a complete response whose Content-Length is smaller than the size the
    #            HEAD announced (a truncating proxy): huggingface_hub's size check must fire.
    #   "drop_once": the first GET announces the full length, sends half and closes the
    #            connection; later GETs (huggingface_hub resumes with a Range request) behave.
    #   "drop_always": as "drop_once", on every GET: the transfer never completes.
    #   "wrong_sha": the announced sha256 (X-Linked-Etag) is not the content's.
    fault: Optional[str] = None
    gets: int = 0

    @property
    def sha256(self) -> str:
        return sha256_hex(self.data)

    @property
    def etag(self) -> str:
        if self.fault == "wrong_sha":
            return sha256_hex(self.data + b"tampered")
        return self.sha256 if self.lfs else git_blob_sha1(self.data)


@dataclass
class Revision:
    commit: str
    files: dict[str, HubFile] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


class FakeHub:
    """Repos -> revisions -> files, served over HTTP on 127.0.0.1 (CDN on localhost)."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Revision]] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._port: Optional[int] = None
        self._connections: set[socket.socket] = set()

    # -- content -------------------------------------------------------------------------------

    def add_file(
        self,
        repo_id: str,
        filename: str,
        data: bytes,
        *,
        revision: str = "main",
        lfs: bool = True,
        fault: Optional[str] = None,
    ) -> HubFile:
        revs = self.repos.setdefault(repo_id, {})
        if revision not in revs:
            commit = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
            revs[revision] = Revision(commit=commit)
            # The Hub also resolves a revision given as its commit hash.
            revs[commit] = revs[revision]
        hub_file = HubFile(data=data, lfs=lfs, fault=fault)
        revs[revision].files[filename] = hub_file
        return hub_file

    def new_commit(self, repo_id: str, revision: str = "main") -> Revision:
        """Move ``revision`` to a new commit holding (a copy of) the same files; returns it for editing."""
        old = self.repos[repo_id][revision]
        commit = hashlib.sha1(f"{old.commit}+1".encode()).hexdigest()
        rev = Revision(commit=commit, files=dict(old.files))
        self.repos[repo_id][revision] = rev
        self.repos[repo_id][commit] = rev
        return rev

    def commit(self, repo_id: str, revision: str = "main") -> str:
        return self.repos[repo_id][revision].commit

    # -- traffic accounting ------------------------------------------------------------------------

    def count(self, method: str, contains: str = "") -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.method == method and contains in r.path)

    def downloads(self) -> int:
        """GETs that transfer file content (resolve or CDN), not metadata."""
        with self._lock:
            return sum(
                1 for r in self.requests if r.method == "GET" and ("/resolve/" in r.path or r.path.startswith("/cdn/"))
            )

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- server --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._port is not None, "server never started"
        return self._port

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> "FakeHub":
        hub = self

        class Handler(_HubHandler):
            fake_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open keep-alive connections: afterwards connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            with self._lock:
                conns, self._connections = list(self._connections), set()
            for conn in conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake_hub: FakeHub

    def log_message(self, format, *args) -> None:  # keep pytest output clean
        pass

    def setup(self) -> None:
        super().setup()
        with self.fake_hub._lock:
            self.fake_hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.fake_hub._lock:
            self.fake_hub._connections.discard(self.connection)
        super().finish()

    # -- helpers -------------------------------------------------------------------------------

    def _record(self) -> None:
        hub = self.fake_hub
        with hub._lock:
            hub.requests.append(Request(self.command, urlsplit(self.path).path, dict(self.headers.items())))

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _error(self, code: str, message: str, extra: Optional[dict[str, str]] = None) -> None:
        body = json.dumps({"error": message}).encode()
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        headers.update(extra or {})
        self._send(404, headers, body)

    def _lookup_revision(self, repo_id: str, revision: str) -> Optional[Revision]:
        revs = self.fake_hub.repos.get(repo_id)
        if revs is None:
            self._error("RepoNotFound", "Repository not found")
            return None
        rev = revs.get(revision)
        if rev is None:
            self._error("RevisionNotFound", "Invalid rev id: " + revision)
            return None
        return rev

    # -- routes --------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._record()
        self._route()

    def do_GET(self) -> None:
        self._record()
        self._route()

    def _route(self) -> None:
        path = urlsplit(self.path).path
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if len(parts) >= 5 and parts[2] == "resolve":
            self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        elif len(parts) == 2 and parts[0] == "cdn":
            self._cdn(parts[1])
        elif len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] == "tree":
            self._tree("/".join(parts[2:4]), parts[5])
        elif len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] == "revision":
            self._model_info("/".join(parts[2:4]), parts[5])
        else:
            self._send(404, {"Content-Type": "text/plain"}, b"not found")

    def _resolve(self, repo_id: str, revision: str, filename: str) -> None:
        rev = self._lookup_revision(repo_id, revision)
        if rev is None:
            return
        hub_file = rev.files.get(filename)
        if hub_file is None:
            self._error("EntryNotFound", f"{filename} does not exist on {revision}", {"X-Repo-Commit": rev.commit})
            return
        if hub_file.lfs:
            headers = {
                "Location": f"{self.fake_hub.cdn}/cdn/{hub_file.sha256}",
                "X-Repo-Commit": rev.commit,
                "X-Linked-Etag": f'"{hub_file.etag}"',
                "X-Linked-Size": str(len(hub_file.data)),
                "ETag": f'"{git_blob_sha1(hub_file.data)}"',
            }
            self._send(302, headers)
            return
        headers = {"X-Repo-Commit": rev.commit, "ETag": f'"{hub_file.etag}"'}
        self._body(hub_file, headers)

    def _cdn(self, sha: str) -> None:
        for revs in self.fake_hub.repos.values():
            for rev in revs.values():
                for hub_file in rev.files.values():
                    if hub_file.lfs and hub_file.sha256 == sha:
                        self._body(hub_file, {})
                        return
        self._send(404, {"Content-Type": "text/plain"}, b"no such blob")

    def _body(self, hub_file: HubFile, headers: dict[str, str]) -> None:
        data = hub_file.data
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if self.command == "HEAD":
            self._send(200, {**headers, "Content-Length": str(len(data))})
            return
        hub_file.gets += 1
        start = 0
        range_header = self.headers.get("Range")
        if range_header and range_header.startswith("bytes=") and range_header.endswith("-"):
            start = int(range_header[len("bytes=") : -1])
        if hub_file.fault == "short":
            data = data[: len(data) // 2]
        if start:
            body = data[start:]
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            status = 206
        else:
            body, status = data, 200
        if hub_file.fault == "drop_always" or (hub_file.fault == "drop_once" and hub_file.gets == 1):
            # Announce everything, send half, hang up: the client sees a broken transfer.
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self._send(status, {**headers, "Content-Length": str(len(body))}, body)

    def _tree(self, repo_id: str, revision: str) -> None:
        rev = self._lookup_revision(repo_id, revision)
        if rev is None:
            return
        entries = []
        for name, hub_file in sorted(rev.files.items()):
            entry = {"type": "file", "path": name, "size": len(hub_file.data), "oid": git_blob_sha1(hub_file.data)}
            if hub_file.lfs:
                entry["lfs"] = {"oid": hub_file.sha256, "size": len(hub_file.data), "pointerSize": 134}
            entries.append(entry)
        self._send(200, {"Content-Type": "application/json"}, json.dumps(entries).encode())

    def _model_info(self, repo_id: str, revision: str) -> None:
        rev = self._lookup_revision(repo_id, revision)
        if rev is None:
            return
        info = {
            "id": repo_id,
            "modelId": repo_id,
            "sha": rev.commit,
            "private": False,
            "siblings": [{"rfilename": name} for name in sorted(rev.files)],
        }
        self._send(200, {"Content-Type": "application/json"}, json.dumps(info).encode())
