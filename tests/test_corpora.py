"""Corpora: the Nietzsche download (against a local HTTP server), the offline corpus, user files."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest
from helpers import one_line_error, run_zoo

from zoo import registry
from zoo.data.sources import DownloadedText, PydocTopics
from zoo.errors import ZooError

BODY = ("Supposing that Truth is a woman--what then? " * 400).encode()


class Server:
    """A local HTTP server whose behaviour each test sets: serve, cut off, or send wrong bytes."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                outer.hits += 1
                body = BODY if outer.mode != "wrong" else BODY.replace(b"Truth", b"Trout")
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.mode == "cut":
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection drops part way
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


def source(url: str) -> DownloadedText:
    return DownloadedText(name="tiny", summary="test", url=url + "/tiny.txt", sha256=hashlib.sha256(BODY).hexdigest(), filename="tiny.txt")


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("ZOO_OFFLINE")


def test_download_is_verified_and_cached(server, online, _isolated_env):
    src = source(server.url)
    assert src.read_text() == BODY.decode()
    assert server.hits == 1
    assert src.cached_path() == _isolated_env / "datasets" / "tiny.txt"
    assert src.read_text() == BODY.decode()
    assert server.hits == 1  # the second read comes from the cache


def test_a_cut_off_download_leaves_nothing_and_a_retry_succeeds(server, online):
    src = source(server.url)
    server.mode = "cut"
    with pytest.raises(ZooError, match="cut off|could not download"):
        src.fetch()
    folder = src.cached_path().parent
    assert not src.cached_path().exists() and not [p for p in folder.iterdir()]  # no partial file left behind
    server.mode = "ok"
    assert src.fetch().read_bytes() == BODY


def test_wrong_bytes_fail_the_sha256_check(server, online):
    src = source(server.url)
    server.mode = "wrong"
    with pytest.raises(ZooError, match="sha256"):
        src.fetch()
    assert not src.cached_path().exists()


def test_a_corrupt_cached_copy_is_replaced(server, online):
    src = source(server.url)
    src.cached_path().parent.mkdir(parents=True)
    src.cached_path().write_bytes(b"half a file")
    assert src.read_text() == BODY.decode() and server.hits == 1


def test_the_mirror_variable_and_the_cli_path(server, online, tmp_path):
    """The real nietzsche source fetched through ZOO_DATASET_MIRROR from a local server."""
    nietzsche = registry.get_dataset("nietzsche")
    assert nietzsche.sha256 == "23cf69874ab69d3d256099ab530ea4be24d47d9675b673bcc67cbcd6298ec647"
    assert nietzsche.url == "https://s3.amazonaws.com/text-datasets/nietzsche.txt"
    env = {"ZOO_DATASET_MIRROR": server.url}
    proc = run_zoo("train", "char-rnn", "--data", "nietzsche", "--max-steps", "1", "--out", str(tmp_path / "r"), env=env)
    line = one_line_error(proc)  # our server's bytes are not Nietzsche's: the hash check refuses them
    assert "sha256" in line and server.hits == 1


def test_nietzsche_from_a_seeded_cache(nietzsche_cache):
    text = registry.get_dataset("nietzsche").read_text()
    assert len(text) == 600_893 and len(set(text)) == 84


def test_offline_without_a_cache_says_what_to_do():
    with pytest.raises(ZooError, match="--data FILE.*pydoc-topics"):
        registry.get_dataset("nietzsche").read_text()


def test_unreachable_server_is_one_clear_line(online, tmp_path):
    src = DownloadedText(name="x", summary="", url="http://127.0.0.1:9/x.txt", sha256="0" * 64, filename="x.txt")
    with pytest.raises(ZooError, match="could not download 'x'.*--data"):
        src.fetch()


@pytest.mark.parametrize("where", ["a-file", "unwritable"])
def test_a_cache_folder_that_cannot_be_written_is_one_clear_line(server, online, tmp_path, monkeypatch, where):
    if where == "a-file":
        (tmp_path / "a-file").write_text("not a folder")
        monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "a-file"))
    else:
        monkeypatch.setenv("ZOO_CACHE_DIR", "/proc/zoo-cannot-write-here")
    with pytest.raises(ZooError, match="cannot write the dataset cache .*; set ZOO_CACHE_DIR to a folder you can write"):
        source(server.url).fetch()
    assert server.hits == 0


def test_a_nul_byte_anywhere_in_a_text_file_is_refused(tmp_path):
    from zoo.data.sources import resolve

    late = tmp_path / "late.txt"
    late.write_bytes(b"a" * (1 << 21) + b"b\0c")  # past the first MiB and beyond
    with pytest.raises(ZooError, match="contains NUL bytes"):
        resolve(str(late), "nietzsche", registry.datasets()).read_text()


def test_offline_corpus_is_english_prose_from_cpython():
    text = PydocTopics().read_text()
    assert 400_000 < len(text) < 600_000
    assert "\0" not in text and text.count(" the ") > 1000


def test_user_file(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("hello world " * 100)
    from zoo.data.sources import resolve

    assert resolve(str(f), "nietzsche", registry.datasets()).read_text() == "hello world " * 100
    assert isinstance(resolve("pydoc-topics", "nietzsche", registry.datasets()), PydocTopics)
    with pytest.raises(ZooError, match="unknown dataset"):
        resolve("nietsche", "nietzsche", registry.datasets())


def test_datasets_command_lists_both():
    out = run_zoo("datasets").stdout
    assert "nietzsche" in out and "pydoc-topics" in out


def test_cached_file_lives_in_the_cache_dir(nietzsche_cache, _isolated_env):
    assert Path(nietzsche_cache).parent.parent == _isolated_env
