"""Model paths on object storage against a real S3 server: moto's, in a subprocess, with IAM
authentication on (unknown keys and wrong secrets are refused as S3 refuses them), behind a proxy
that can cut a download mid-body. The model is the tiny Llama of conftest, uploaded file by file."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

from lmgauge.models.base import ModelError  # noqa: E402
from lmgauge.models.object_store import fetch  # noqa: E402

BUCKET = "weights"
PREFIX = "models/tiny/"


class CuttingProxy:
    """One request per connection, forwarded to the server with `Connection: close`; a GET whose
    request line contains `cut_key` is closed after `cut_after` response bytes, `cuts` times (-1: always)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.requests: list[tuple[str, str]] = []  # (request line, Range header)
        self.cut_key: str | None = None
        self.cut_after = 0
        self.cuts = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            headers = dict(line.decode().split(":", 1) for line in lines[1:])
            headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
            while len(body) < int(headers.get("content-length", 0)):
                body += conn.recv(65536)
            request = lines[0].decode()
            self.requests.append((request, headers.get("range", "")))
            cut = bool(self.cut_key and request.startswith("GET") and self.cut_key in request and self.cuts != 0)
            if cut:
                self.cuts -= 1
            kept = [line for line in lines[1:] if not line.lower().startswith(b"connection:")]
            with socket.create_connection(("127.0.0.1", self.upstream)) as up:
                up.sendall(b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n" + body)
                sent = 0
                while chunk := up.recv(65536):
                    if cut and sent + len(chunk) > self.cut_after:
                        conn.sendall(chunk[: self.cut_after - sent])
                        return  # the connection drops mid-body
                    conn.sendall(chunk)
                    sent += len(chunk)

    def gets(self, key: str) -> list[str]:
        return [rng for req, rng in self.requests if req.startswith("GET") and key in req]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tiny_llama_dir):
    """(proxy, access key, secret key, source folder): the tiny model under s3://weights/models/tiny/."""
    port = _free_port()
    # the first three actions (the IAM user, its policy and key) need no signature; every later one does
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("moto's server did not start")
                time.sleep(0.1)
        anon = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        iam = boto3.client("iam", **anon)
        iam.create_user(UserName="evaluator")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="evaluator", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="evaluator")["AccessKey"]
        ak, sk = key["AccessKeyId"], key["SecretAccessKey"]
        client = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ak, aws_secret_access_key=sk
        )
        client.create_bucket(Bucket=BUCKET)
        for f in sorted(tiny_llama_dir.iterdir()):
            client.upload_file(str(f), BUCKET, PREFIX + f.name)
        proxy = CuttingProxy(port)
        yield proxy, ak, sk, tiny_llama_dir
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture()
def petrel(s3, tmp_path, monkeypatch):
    """A petreloss.conf whose [model_weights] cluster is the server (through the proxy); a fresh cache."""
    proxy, ak, sk, _ = s3

    def write(access_key: str = ak, secret_key: str = sk) -> Path:
        conf = tmp_path / "petreloss.conf"
        conf.write_text(
            "[DEFAULT]\ndefault_cluster = model_weights\n\n"
            f"[model_weights]\nboto = True\nhost_base = 127.0.0.1:{proxy.port}\n"
            f"access_key = {access_key}\nsecret_key = {secret_key}\n",
            encoding="utf-8",
        )
        return conf

    monkeypatch.setenv("LMGAUGE_PETRELOSS_CONF", str(write()))
    monkeypatch.setenv("LMGAUGE_CACHE", str(tmp_path / "cache"))
    proxy.requests.clear()
    proxy.cut_key, proxy.cuts = None, 0
    return write


def _same_files(a: Path, b: Path) -> None:
    names = sorted(p.name for p in b.iterdir())
    assert sorted(p.name for p in a.iterdir() if not p.name.startswith(".lmgauge")) == names
    for n in names:
        assert hashlib.md5((a / n).read_bytes()).digest() == hashlib.md5((b / n).read_bytes()).digest(), n


def _no_secrets(root: Path, *secrets: str) -> None:
    for f in root.rglob("*"):
        if f.is_file():
            text = f.read_bytes()
            for s in secrets:
                assert s.encode() not in text, f"{s[:4]}... written to {f}"


def test_cluster_path_fetched_once_then_loaded_by_a_run(s3, petrel, tmp_path, monkeypatch):
    """`path='model_weights:s3://weights/models/tiny/'` in an OpenCompass config: fetched, checked,
    renamed into the cache, loaded; a second run lists the prefix and downloads nothing. No key in
    the run directory, the cache or the log."""
    from lmgauge.cli import main

    proxy, ak, sk, source = s3
    monkeypatch.chdir(tmp_path)
    rows = [{"text": f"sentence {i}", "label": "yes" if i % 2 else "no"} for i in range(3)]
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "eval_s3.py").write_text(
        "from opencompass.models import HuggingFaceBaseModel\n"
        "from opencompass.datasets import CustomDataset\n"
        "from opencompass.openicl.icl_prompt_template import PromptTemplate\n"
        "from opencompass.openicl.icl_retriever import ZeroRetriever\n"
        "from opencompass.openicl.icl_inferencer import PPLInferencer\n"
        "from opencompass.openicl.icl_evaluator import AccEvaluator\n"
        "datasets = [dict(abbr='mine', type=CustomDataset, path='mine.jsonl', reader_cfg=dict(input_columns=['text'], "
        "output_column='label'), infer_cfg=dict(prompt_template=dict(type=PromptTemplate, "
        "template={l: '{text} -> ' + l for l in ('no', 'yes')}), retriever=dict(type=ZeroRetriever), "
        "inferencer=dict(type=PPLInferencer)), eval_cfg=dict(evaluator=dict(type=AccEvaluator)))]\n"
        f"models = [dict(type=HuggingFaceBaseModel, abbr='tiny', path='model_weights:s3://{BUCKET}/{PREFIX}', "
        f"tokenizer_path='model_weights:s3://{BUCKET}/{PREFIX}', batch_size=4)]\n"
        "work_dir = 'outputs'\n",
        encoding="utf-8",
    )
    assert main(["run", "eval_s3.py", "--run-id", "a", "--debug"]) == 0
    (cached,) = [p for p in (tmp_path / "cache" / "objects").iterdir() if p.is_dir()]
    _same_files(cached, source)
    assert not list((tmp_path / "cache" / "objects").glob("*.partial"))
    first = len(proxy.gets(PREFIX + "model.safetensors"))
    assert first == 1
    assert main(["run", "eval_s3.py", "--run-id", "b"]) == 0
    assert len(proxy.gets(PREFIX + "model.safetensors")) == first  # the second run listed, downloaded nothing
    a = json.loads((tmp_path / "outputs" / "a" / "results" / "tiny" / "mine.json").read_text())
    b = json.loads((tmp_path / "outputs" / "b" / "results" / "tiny" / "mine.json").read_text())
    assert a["metrics"] == b["metrics"]
    assert "model_weights:s3://" in (tmp_path / "outputs" / "a" / "run.json").read_text()
    _no_secrets(tmp_path / "outputs", ak, sk)
    _no_secrets(tmp_path / "cache", ak, sk)


def test_plain_s3_with_aws_variables(s3, petrel, monkeypatch):
    proxy, ak, sk, source = s3
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ak)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", sk)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    _same_files(fetch(f"s3://{BUCKET}/{PREFIX}"), source)


def test_missing_key_and_missing_section(s3, petrel, tmp_path, monkeypatch):
    _, ak, sk, _ = s3
    with pytest.raises(ModelError, match=r"model_weights:s3://weights/models/nothere/: no objects there"):
        fetch(f"model_weights:s3://{BUCKET}/models/nothere/")
    with pytest.raises(ModelError, match=r"NoSuchBucket"):
        fetch("model_weights:s3://no-such-bucket/models/tiny/")
    with pytest.raises(ModelError, match=r"petreloss.conf: no \[cluster2\] section .*\(it has: model_weights\)"):
        fetch(f"cluster2:s3://{BUCKET}/{PREFIX}")
    monkeypatch.setenv("LMGAUGE_PETRELOSS_CONF", str(tmp_path / "none.conf"))
    with pytest.raises(ModelError, match=r"none.conf with a \[model_weights\] section"):
        fetch(f"model_weights:s3://{BUCKET}/{PREFIX}")


@pytest.mark.parametrize("which", ["secret", "access"])
def test_bad_credentials_refused_and_never_said(s3, petrel, tmp_path, which):
    _, ak, sk, _ = s3
    bad_ak, bad_sk = ("AKIAUNKNOWN00000000", sk) if which == "access" else (ak, "wrong-secret-value-0123")
    petrel(bad_ak, bad_sk)
    with pytest.raises(ModelError) as e:
        fetch(f"model_weights:s3://{BUCKET}/{PREFIX}")
    msg = str(e.value)
    assert ("InvalidAccessKeyId" if which == "access" else "SignatureDoesNotMatch") in msg
    assert bad_ak not in msg and bad_sk not in msg and sk not in msg
    assert not list((tmp_path / "cache").rglob("*.safetensors"))


def test_cut_download_resumes_and_is_never_half_used(s3, petrel, tmp_path):
    proxy, _, _, source = s3
    big = PREFIX + "model.safetensors"
    size = (source / "model.safetensors").stat().st_size
    assert size > 200_000
    proxy.cut_key, proxy.cut_after, proxy.cuts = big, 100_000, -1  # every GET of it drops after ~100 kB
    with pytest.raises(ModelError, match="model.safetensors"):
        fetch(f"model_weights:s3://{BUCKET}/{PREFIX}")
    objects = tmp_path / "cache" / "objects"
    (partial,) = objects.glob("*.partial")
    assert not [p for p in objects.iterdir() if p.is_dir() and not p.name.endswith(".partial")]  # nothing to load
    held = (partial / "model.safetensors").stat().st_size
    assert 0 < held < size
    ranges = proxy.gets(big)
    assert ranges[0] == "" and all(r.startswith("bytes=") for r in ranges[1:])  # each try continued
    proxy.cuts = 0  # the network is back: the next fetch continues from what the partial file holds
    folder = fetch(f"model_weights:s3://{BUCKET}/{PREFIX}")
    assert proxy.gets(big)[-1] == f"bytes={held}-"
    _same_files(folder, source)
    assert not list(objects.glob("*.partial"))
    proxy.requests.clear()
    proxy.cut_key, proxy.cuts = big, 1  # one cut: the same fetch continues by itself
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    _same_files(fetch(f"model_weights:s3://{BUCKET}/{PREFIX}"), source)
    assert len(proxy.gets(big)) == 2 and proxy.gets(big)[1].startswith("bytes=")


def test_missing_credentials_fail_before_any_work(petrel, tmp_path, monkeypatch, capfd):
    from lmgauge.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["run", "--hf-path", f"cluster9:s3://{BUCKET}/{PREFIX}", "--datasets", "mmlu_astronomy", "--limit", "1"]
    assert main([*args, "-w", str(tmp_path / "out")]) == 2
    err = capfd.readouterr().err
    assert "model tiny: " in err and "petreloss.conf: no [cluster9] section" in err
    assert not (tmp_path / "out").exists()  # no run directory: nothing was started


def test_multipart_etag_checked(s3, petrel, tmp_path, caplog):
    """A multipart upload (boto3's upload_file over its threshold): its ETag is the MD5 of the parts'
    MD5s; the fetched copy reproduces it, a file of the same size with other bytes does not (which,
    since an uploader's part size is not known, is said and the size alone checked)."""
    from boto3.s3.transfer import TransferConfig

    from lmgauge.models.object_store import _checked

    proxy, ak, sk, _ = s3
    blob = tmp_path / "weights.gguf"
    blob.write_bytes(os.urandom(6 << 20))
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{proxy.port}",
        region_name="us-east-1",
        aws_access_key_id=ak,
        aws_secret_access_key=sk,
    )
    mib5 = 5 << 20
    client.upload_file(
        str(blob),
        BUCKET,
        "gguf/weights.gguf",
        Config=TransferConfig(multipart_threshold=mib5, multipart_chunksize=mib5),
    )
    etag = client.head_object(Bucket=BUCKET, Key="gguf/weights.gguf")["ETag"].strip('"')
    assert etag.endswith("-2")
    got = fetch(f"model_weights:s3://{BUCKET}/gguf/weights.gguf")  # one object: the path of the file itself
    assert got.name == "weights.gguf" and got.read_bytes() == blob.read_bytes()
    assert "not reproduced" not in caplog.text
    other = tmp_path / "other.bin"
    other.write_bytes(blob.read_bytes()[:-1] + b"\0")
    _checked(other, {"key": "k", "size": 6 << 20, "etag": etag})
    assert "k: multipart ETag not reproduced with part sizes [5242880, " in caplog.text


def test_concurrent_loads_download_once(s3, petrel):
    """Two workers loading the same model at once: one downloads, the other waits on the lock and
    finds the folder complete."""
    proxy, _, _, source = s3
    out: list[Path] = []
    threads = [
        threading.Thread(target=lambda: out.append(fetch(f"model_weights:s3://{BUCKET}/{PREFIX}"))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(out) == 2 and out[0] == out[1]
    _same_files(out[0], source)
    assert len(proxy.gets(PREFIX + "model.safetensors")) == 1
