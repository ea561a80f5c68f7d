"""A small stand-in for the Hugging Face Hub on 127.0.0.1.

It answers the requests the real `huggingface_hub` client makes for
`snapshot_download` (repo info, tree listing, file resolve with HEAD and GET),
so tests run the real client end to end with `HF_ENDPOINT` pointing here.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class FakeHub:
    def __init__(self) -> None:
        # repo_id -> commit sha -> {path: bytes}; refs: repo_id -> {branch: sha}
        self.commits: dict[str, dict[str, dict[str, bytes]]] = {}
        self.refs: dict[str, dict[str, str]] = {}
        self.requests: Counter = Counter()
        self._server: ThreadingHTTPServer | None = None

    # -- content --------------------------------------------------------------------

    def add_commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Store a commit of `files`; returns its 40-hex sha (and moves `branch`)."""
        digest = hashlib.sha1(repo_id.encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + files[path])
        sha = digest.hexdigest()
        self.commits.setdefault(repo_id, {})[sha] = dict(files)
        self.refs.setdefault(repo_id, {})[branch] = sha
        return sha

    def add_folder(self, repo_id: str, folder: Path, branch: str = "main") -> str:
        files = {p.relative_to(folder).as_posix(): p.read_bytes()
                 for p in sorted(folder.rglob("*")) if p.is_file()}
        return self.add_commit(repo_id, files, branch)

    def _lookup(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        commits = self.commits.get(repo_id)
        if commits is None:
            return None
        sha = self.refs[repo_id].get(revision, revision)
        return (sha, commits[sha]) if sha in commits else None

    # -- server ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                self._handle(head=True)

            def do_GET(self):
                self._handle(head=False)

            def _send(self, status, body=b"", headers=None, head=False):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, status, obj, head=False):
                self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"}, head)

            def _not_found(self, what, head):
                self._send(404, json.dumps({"error": what}).encode(),
                           {"Content-Type": "application/json", "X-Error-Code": "RepoNotFound",
                            "X-Error-Message": what}, head)

            def _handle(self, head: bool):
                path = unquote(urlparse(self.path).path)
                hub.requests[(self.command, path)] += 1
                parts = path.strip("/").split("/")
                # /api/models/{org}/{name}/revision/{rev}
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
                    repo, rev = "/".join(parts[2:4]), "/".join(parts[5:])
                    found = hub._lookup(repo, rev)
                    if not found:
                        return self._not_found(f"{repo}@{rev} not found", head)
                    sha, files = found
                    return self._json(200, {"id": repo, "modelId": repo, "sha": sha, "private": False,
                                            "siblings": [{"rfilename": p} for p in sorted(files)]}, head)
                # /api/models/{org}/{name}/tree/{rev}[/{path}]
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
                    repo, rev = "/".join(parts[2:4]), parts[5]
                    found = hub._lookup(repo, rev)
                    if not found:
                        return self._not_found(f"{repo}@{rev} not found", head)
                    _, files = found
                    entries = [{"type": "file", "path": p, "size": len(b),
                                "oid": hashlib.sha1(b).hexdigest()} for p, b in sorted(files.items())]
                    return self._json(200, entries, head)
                # /{org}/{name}/resolve/{rev}/{path}
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, rev, file_path = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                    found = hub._lookup(repo, rev)
                    if not found or file_path not in found[1]:
                        return self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"}, head)
                    sha, files = found
                    body = files[file_path]
                    etag = hashlib.sha1(body).hexdigest()
                    return self._send(200, body, {"X-Repo-Commit": sha, "ETag": f'"{etag}"',
                                                  "Content-Type": "application/octet-stream"}, head)
                return self._send(404, b"unknown route", head=head)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
