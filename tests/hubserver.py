"""A local Hub-compatible HTTP server on 127.0.0.1, good enough for huggingface_hub's pushes.

It answers what ``create_repo``, ``upload_folder`` / ``upload_file`` / ``create_commit`` (preupload, then an
NDJSON commit; a card's YAML is validated first) and ``list_repo_tree`` ask of the Hub, and keeps every repo's files
in memory, with its commits, so a test can look at exactly what reached the "Hub". Every file is offered the
"regular" upload mode (its bytes ride in the commit), so no LFS or Xet storage is needed; huggingface_hub's own
streamed, multi-commit upload pipeline still runs, as it does against the Hub. ``fail_commits`` makes the next
commits fail with a 500, as a Hub outage would.

Point a process at it with ``HF_ENDPOINT=<server.url>`` (and ``HF_HUB_OFFLINE=0``, a token in ``HF_TOKEN``); in
this process, ``serving(monkeypatch)`` points huggingface_hub's constants at it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

TOKEN = "hf_LoCaLhUbSeRvErToKeN0123456789abcdef"


@dataclass
class Repo:
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)  # their summaries, oldest first

    @property
    def head(self) -> str:
        return hashlib.sha1(f"{len(self.commits)}".encode()).hexdigest()


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repos: dict[str, Repo] = {}
        self.lock = threading.Lock()
        self.fail_commits = 0  # the next this many commits answer 500

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def files(self, repo_id: str) -> dict[str, bytes]:
        with self.lock:
            return dict(self.repos[repo_id].files)


@contextmanager
def running() -> Iterator[HubServer]:
    """A server on a free loopback port, serving in a thread until the block ends."""
    server = HubServer()
    thread = threading.Thread(target=server.serve_forever, name="hubserver", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: HubServer

    def log_message(self, *args) -> None:  # quiet: tests read the repos, not the log
        pass

    def _reply(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        self._reply(401, {"error": "Invalid credentials in Authorization header"})
        return False

    def _route(self) -> tuple[list[str], dict]:
        parts = urlsplit(self.path)
        return [unquote(p) for p in parts.path.strip("/").split("/")], parse_qs(parts.query)

    def _repo(self, kind: str, owner: str, name: str) -> Repo | None:
        repo = self.server.repos.get(f"{owner}/{name}") if kind == "datasets" else None
        if repo is None:
            self._reply(404, {"error": "Repository not found"})
        return repo

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if not self._authorized():
            return
        path, _ = self._route()
        body = self._body()
        with self.server.lock:
            if path == ["api", "repos", "create"]:
                return self._create(json.loads(body))
            if path == ["api", "validate-yaml"]:
                return self._validate_card(json.loads(body)["content"])
            if len(path) >= 6 and path[0] == "api" and path[4] in ("preupload", "commit"):
                if (repo := self._repo(*path[1:4])) is None:
                    return None
                if path[4] == "preupload":
                    return self._preupload(json.loads(body))
                return self._commit(repo, body, f"{path[2]}/{path[3]}")
            return self._reply(404, {"error": f"not served here: POST {self.path}"})

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        path, query = self._route()
        with self.server.lock:
            if len(path) < 4 or path[0] != "api":
                return self._reply(404, {"error": f"not served here: GET {self.path}"})
            if (repo := self._repo(*path[1:4])) is None:
                return None
            if len(path) >= 6 and path[4] == "tree":
                return self._tree(repo, "/".join(path[6:]), query.get("recursive", ["False"])[0].lower() == "true")
            return self._reply(200, {"id": f"{path[2]}/{path[3]}", "sha": repo.head, "private": repo.private})

    def _create(self, request: dict) -> None:
        repo_id = f"{request['organization'] or 'someone'}/{request['name']}"
        if repo_id in self.server.repos:
            return self._reply(409, {"error": "You already created this dataset repo", "url": self._url(repo_id)})
        self.server.repos[repo_id] = Repo(private=request.get("visibility") == "private")
        self._reply(200, {"url": self._url(repo_id)})

    def _validate_card(self, text: str) -> None:
        """A card's YAML header must parse to a mapping (the Hub checks much more)."""
        header = text.split("---")[1] if text.startswith("---") else ""
        try:
            ok = isinstance(yaml.safe_load(header), dict)
        except yaml.YAMLError:
            ok = False
        self._reply(200 if ok else 400, {"warnings": []} if ok else {"errors": [{"message": "invalid YAML header"}]})

    def _url(self, repo_id: str) -> str:
        return f"{self.server.url}/datasets/{repo_id}"

    def _preupload(self, request: dict) -> None:
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in request["files"]]
        self._reply(200, {"files": files})

    def _commit(self, repo: Repo, body: bytes, repo_id: str) -> None:
        if self.server.fail_commits:
            self.server.fail_commits -= 1
            return self._reply(500, {"error": "Internal Error (a test made this commit fail)"})
        summary = ""
        for line in body.splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                summary = value["summary"]
            elif item["key"] == "file":
                repo.files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "deletedFile":
                repo.files.pop(value["path"], None)
            elif item["key"] == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                repo.files = {p: b for p, b in repo.files.items() if not p.startswith(folder)}
            else:
                return self._reply(400, {"error": f"{item['key']} operations are not served here"})
        repo.commits.append(summary)
        self._reply(200, {"commitUrl": f"{self._url(repo_id)}/commit/{repo.head}", "commitOid": repo.head})

    def _tree(self, repo: Repo, under: str, recursive: bool) -> None:
        prefix = f"{under.rstrip('/')}/" if under else ""
        entries: dict[str, dict] = {}
        for path, data in sorted(repo.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :].split("/")
            for depth in range(1, len(rest)):  # the folders on the way
                folder = prefix + "/".join(rest[:depth])
                entries.setdefault(folder, {"type": "directory", "path": folder, "oid": "0" * 40})
                if not recursive:
                    break
            if recursive or len(rest) == 1:
                oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                entries[path] = {"type": "file", "path": path, "size": len(data), "oid": oid}
        if under and not entries:
            return self._reply(404, {"error": f"{under} does not exist"})
        self._reply(200, list(entries.values()))


def serving(server: HubServer, monkeypatch) -> None:
    """Point huggingface_hub, in this process, at ``server`` (online, with the server's token)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
