"""The Hub token never leaves in a message: each command line run against a real HTTP server on 127.0.0.1 that
echoes the request's Authorization header in every error it sends (body and ``X-Error-Message`` header), with
``HF_ENDPOINT`` pointing at it and a fake ``HF_TOKEN``. The token must be in neither output stream nor any file
the run wrote; the server must have seen it (so the test would catch a leak).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.e2e  # command lines in subprocesses against a local server

FAKE_TOKEN = "hf_EcHoEdToKeN0123456789abcdefSyNtHdAtA"


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with a 500 whose message quotes the request's Authorization header."""

    seen: list[str] = []

    def _echo(self) -> None:
        authorization = self.headers.get("Authorization", "")
        type(self).seen.append(authorization)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        message = f"internal error while checking credentials {authorization!r}"
        body = json.dumps({"error": message}).encode() if self.command != "HEAD" else b""
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _echo

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def echo_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_command(args: list[str], endpoint: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HUGGING_FACE_HUB_TOKEN")}
    env |= {"HF_ENDPOINT": endpoint, "HF_TOKEN": FAKE_TOKEN, "HF_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def assert_token_kept(result: subprocess.CompletedProcess, written: Path) -> None:
    assert FAKE_TOKEN not in result.stdout and FAKE_TOKEN not in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for path in written.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert FAKE_TOKEN.encode() not in path.read_bytes(), path
    assert any(FAKE_TOKEN in seen for seen in _EchoHandler.seen), "the server never saw the token"


@pytest.fixture()
def fresh(tmp_path: Path):
    _EchoHandler.seen.clear()
    return tmp_path


def test_build_push(echo_server: str, smoke_dir: Path, fresh: Path):
    out = Path(shutil.copytree(smoke_dir, fresh / "smoke"))
    result = run_command(
        ["build.py", "recipes/smoke.yaml", "--output-dir", str(out), "--push-to-hub", "someone/smoke"],
        echo_server,
        fresh / "hf",
    )
    assert result.returncode == 3, result.stderr
    assert "<token>" in result.stderr  # the server's echo is quoted, scrubbed
    assert_token_kept(result, fresh)


def test_training_push(echo_server: str, smoke_dir: Path, fresh: Path):
    out = fresh / "probe"
    args = ["-m", "training", "--dataset", str(smoke_dir), "--output-dir", str(out), "--backbone-weights", "none"]
    args += ["--epochs", "1", "--cache-dir", str(fresh / "features"), "--push-to-hub", "someone/probe"]
    result = run_command(args, echo_server, fresh / "hf")
    assert result.returncode == 3, result.stderr
    assert "<token>" in result.stderr
    assert (out / "head.safetensors").is_file()
    assert_token_kept(result, fresh)


def test_eval_model_probe(echo_server: str, smoke_dir: Path, fresh: Path):
    out = fresh / "scored"
    args = ["-m", "eval", str(smoke_dir), "--output-dir", str(out), "--clip-model", "someone/clip", "--no-resnet50"]
    result = run_command(args, echo_server, fresh / "hf")
    assert result.returncode == 4, result.stderr
    assert "--clip-model: the CLIP model 'someone/clip'" in result.stderr and "<token>" in result.stderr
    assert not out.exists()
    assert_token_kept(result, fresh)


def test_eval_hub_dataset(echo_server: str, fresh: Path):
    out = fresh / "scored"
    args = ["-m", "eval", "someone/dataset", "--output-dir", str(out)]
    args += ["--clip-model", "tiny-random", "--resnet50-weights", "tiny-random"]
    result = run_command(args, echo_server, fresh / "hf")
    assert result.returncode != 0
    assert FAKE_TOKEN not in result.stdout and FAKE_TOKEN not in result.stderr, result.stderr[-3000:]
    for path in fresh.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert FAKE_TOKEN.encode() not in path.read_bytes(), path
    assert any(FAKE_TOKEN in seen for seen in _EchoHandler.seen), "the server never saw the token"
