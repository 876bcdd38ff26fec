"""A real S3 server on 127.0.0.1 (moto's server mode) for tests and benchmarks: nothing of the client is mocked,
s3fs talks HTTP to it. ``s3_server`` yields the environment a process needs to reach it (credentials, endpoint)
and an s3fs client of our own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def s3_server(key: str = "testing") -> Iterator[tuple[dict[str, str], object]]:
    """A running server, with the environment for its clients and an s3fs client; stopped on exit."""
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    fs = s3fs.S3FileSystem(
        key=key, secret=key, endpoint_url=env["AWS_ENDPOINT_URL"], skip_instance_cache=True, use_listings_cache=False
    )
    try:
        yield env, fs
    finally:
        server.stop()
