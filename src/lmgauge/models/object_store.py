"""Model and tokenizer folders on object storage, fetched once into a checked local cache.

    path='model_weights:s3://bucket/prefix/'   OpenCompass' internal form: the [model_weights] section
                                               of ~/petreloss.conf gives host_base, access_key, secret_key
    path='s3://bucket/prefix/'                 AWS: boto3's own credentials (AWS_ACCESS_KEY_ID,
                                               AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL_S3 /
                                               AWS_ENDPOINT_URL, AWS_REGION, ~/.aws)

The objects under the prefix are downloaded into `<cache>/objects/<name>.partial/` (a cut download is
continued with a ranged GET from what the file holds), each checked against its listed size and ETag
(a single-part upload's: the content's MD5; a multipart upload's: the MD5 of its parts' MD5s, for the
whole-MiB part sizes that give its number of parts); only when every object is complete is the folder
renamed to `<cache>/objects/<name>/` in one step, so a loader never sees half a folder. Later loads
list the prefix again and reuse the folder while the listing (keys, sizes, ETags) is the same. A lock
file makes concurrent workers wait for one download.

Credentials never leave this module: not in the cache's record, not in logs (botocore's debug log
prints the Authorization header, so its loggers are held at WARNING), not in errors (every message
is scrubbed of the keys before it is raised).

boto3 (the optional `s3` extra) rather than hand-signed HTTP: SigV4 signing, path-style addressing for
Ceph/petrel endpoints, pagination and retries are what it is for; the download loop is ours.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmgauge.models.base import ModelError

log = logging.getLogger(__name__)

URL = re.compile(r"^(?:(?P<cluster>[A-Za-z0-9_.-]+):)?s3://(?P<bucket>[^/]+)/?(?P<prefix>.*)$")
CHUNK = 1 << 20
TRIES = 3  # ranged GETs per object within one fetch; a later fetch continues from the partial file
RECORD = ".lmgauge-object-store.json"


def is_remote(path: str | None) -> bool:
    return bool(path) and URL.match(str(path)) is not None


@dataclass(frozen=True)
class Location:
    cluster: str | None  # petreloss.conf section, None: plain s3:// (AWS credentials)
    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"{self.cluster + ':' if self.cluster else ''}s3://{self.bucket}/{self.prefix}"


def parse(path: str) -> Location:
    m = URL.match(path)
    if m is None:
        raise ModelError(f"{path!r} is not an object-storage path (s3://bucket/prefix or cluster:s3://bucket/prefix)")
    return Location(m["cluster"], m["bucket"], m["prefix"])


@dataclass
class Credentials:
    endpoint: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    path_style: bool = False

    def scrub(self, text: str) -> str:
        for secret in (self.access_key, self.secret_key, os.environ.get("AWS_SESSION_TOKEN")):
            if secret:
                text = text.replace(secret, "***")
        return text


def petreloss_conf() -> Path:
    return Path(os.environ.get("LMGAUGE_PETRELOSS_CONF") or Path.home() / "petreloss.conf")


def credentials(loc: Location) -> Credentials:
    """A cluster's section of petreloss.conf; plain s3:// leaves credentials to boto3."""
    if loc.cluster is None:
        return Credentials()
    conf = petreloss_conf()
    needed = ("host_base", "access_key", "secret_key")
    if not conf.is_file():
        raise ModelError(
            f"{loc.url}: needs {conf} with a [{loc.cluster}] section ({', '.join(needed)}); it does not exist"
        )
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(conf, encoding="utf-8")
    except configparser.Error as e:
        raise ModelError(f"{conf}: cannot be read ({type(e).__name__})") from None
    if not parser.has_section(loc.cluster):
        raise ModelError(f"{conf}: no [{loc.cluster}] section for {loc.url} (it has: {', '.join(parser.sections())})")
    section = parser[loc.cluster]
    missing = [k for k in needed if not section.get(k)]
    if missing:
        raise ModelError(f"{conf}: [{loc.cluster}] has no {', '.join(missing)}")
    host = section["host_base"].strip()
    if "://" not in host:
        host = "http://" + host
    return Credentials(host, section["access_key"].strip(), section["secret_key"].strip(), path_style=True)


def _client(creds: Credentials):
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ModelError("object-storage model paths need boto3: pip install 'lmgauge[s3]'") from None
    for name in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)  # their debug lines carry the Authorization header
    cfg = Config(
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path" if creds.path_style else "auto"},
        signature_version="s3v4",
    )
    kwargs: dict[str, Any] = {"config": cfg}
    if creds.endpoint:
        kwargs.update(endpoint_url=creds.endpoint, region_name=os.environ.get("AWS_REGION") or "us-east-1")
    if creds.access_key:
        kwargs.update(aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key)
    return boto3.session.Session().client("s3", **kwargs)


def _why(e: Exception) -> str:
    """An S3 error in words: its code and message (botocore's str), nothing of the request."""
    resp = getattr(e, "response", None)
    if isinstance(resp, dict) and resp.get("Error"):
        err = resp["Error"]
        return f"{err.get('Code')}: {err.get('Message')}"
    return f"{type(e).__name__}: {e}"


def _listing(client, loc: Location) -> dict[str, dict]:
    """{relative key: {size, etag}} of the folder (or the one object) at the location."""
    prefix = loc.prefix.rstrip("/") + "/" if loc.prefix.strip("/") else ""
    out: dict[str, dict] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
        for obj in page.get("Contents") or []:
            rel = obj["Key"][len(prefix) :]
            if rel and not rel.endswith("/"):
                out[rel] = {"key": obj["Key"], "size": int(obj["Size"]), "etag": str(obj.get("ETag", "")).strip('"')}
    if not out and loc.prefix and not loc.prefix.endswith("/"):
        try:  # a single object (a .gguf file)
            head = client.head_object(Bucket=loc.bucket, Key=loc.prefix)
        except Exception as e:  # noqa: BLE001 - a missing key says so below
            if getattr(e, "response", {}).get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        else:
            name = loc.prefix.rsplit("/", 1)[-1]
            out[name] = {"key": loc.prefix, "size": int(head["ContentLength"]), "etag": str(head["ETag"]).strip('"')}
    return out


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _multipart_etag(path: Path, part_size: int) -> str:
    parts = []
    with path.open("rb") as f:
        while block := f.read(part_size):
            parts.append(hashlib.md5(block, usedforsecurity=False).digest())
    return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"


COMMON_PART_MIB = (8, 16, 5, 15, 32, 64, 10, 50, 100, 128, 256, 512)  # boto3 / AWS CLI 8, s3cmd 15, ...


def _part_sizes(size: int, parts: int) -> list[int]:
    """Part sizes (whole MiB, as uploaders use) that cut `size` bytes into `parts` parts: the
    common ones first, then the smallest others; at most four (each costs a pass over the file)."""
    mib = 1 << 20
    fits = [k for k in range(1, 5121) if -(-size // (k * mib)) == parts]
    ordered = [k for k in COMMON_PART_MIB if k in fits] + [k for k in fits if k not in COMMON_PART_MIB]
    return [k * mib for k in ordered[:4]]


def _checked(path: Path, obj: dict) -> bool:
    """The file is the object: its size, and its ETag: a single-part upload's is the content's MD5,
    a multipart upload's `<md5 of the parts' md5s>-<parts>`, tried for the part sizes that give that
    many parts; where none reproduces it (an uploader's odd part size) the size alone is checked."""
    if path.stat().st_size != obj["size"]:
        return False
    etag = obj["etag"]
    if re.fullmatch(r"[0-9a-f]{32}", etag):
        return _md5(path) == etag
    m = re.fullmatch(r"[0-9a-f]{32}-(\d+)", etag)
    if m:
        sizes = _part_sizes(obj["size"], int(m[1]))
        if any(_multipart_etag(path, p) == etag for p in sizes):
            return True
        log.warning("%s: multipart ETag not reproduced with part sizes %s; its size is checked", obj["key"], sizes)
    return True


def _download(client, loc: Location, obj: dict, dest: Path) -> None:
    """The object into `dest`, continuing from what `dest` holds (ranged GETs)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, TRIES + 1):
        have = dest.stat().st_size if dest.exists() else 0
        if have > obj["size"]:
            dest.unlink()
            have = 0
        if have < obj["size"]:
            try:
                kwargs = {"Range": f"bytes={have}-"} if have else {}
                body = client.get_object(Bucket=loc.bucket, Key=obj["key"], **kwargs)["Body"]
                with dest.open("ab") as f:
                    while block := body.read(CHUNK):
                        f.write(block)
            except Exception as e:  # noqa: BLE001 - a cut stream, a reset: continue from the partial file
                if getattr(e, "response", None):  # an S3 error answer is not a cut
                    raise
                got = dest.stat().st_size if dest.exists() else 0
                log.warning(
                    "%s: %s (%d of %d bytes so far, try %d of %d)",
                    obj["key"],
                    _why(e),
                    got,
                    obj["size"],
                    attempt,
                    TRIES,
                )
                if attempt == TRIES:
                    raise ModelError(
                        f"{loc.url}: {obj['key']}: the download was cut {TRIES} times ({got} of {obj['size']} bytes "
                        f"kept in {dest.parent}); the next load continues from there"
                    ) from None
                time.sleep(0.2 * attempt)
                continue
        if _checked(dest, obj):
            return
        log.warning("%s: content does not match its listing (size/ETag); downloading it again", obj["key"])
        dest.unlink()
    raise ModelError(f"{loc.url}: {obj['key']} did not match its size/ETag after {TRIES} downloads")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # another worker fetching the same folder: wait for it
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cache_dir(loc: Location, creds: Credentials) -> Path:
    from lmgauge.models.hf_loading import cache_root

    where = f"{creds.endpoint or 'aws'}|{loc.bucket}|{loc.prefix.rstrip('/')}"
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", loc.prefix.rstrip("/").rsplit("/", 1)[-1] or loc.bucket)
    return cache_root() / "objects" / f"{tail}-{hashlib.sha256(where.encode()).hexdigest()[:12]}"


def fetch(path: str) -> Path:
    """The local copy of an object-storage folder (or file), fetched now if not cached and current."""
    loc = parse(path)
    creds = credentials(loc)
    final = cache_dir(loc, creds)
    try:
        with _locked(final.with_name(final.name + ".lock")):
            return _fetch(loc, creds, final)
    except ModelError as e:
        raise ModelError(creds.scrub(str(e))) from None
    except Exception as e:  # noqa: BLE001 - boto's and the network's errors, said without a traceback of the request
        raise ModelError(creds.scrub(f"{loc.url}: {_why(e)}")) from None


def _fetch(loc: Location, creds: Credentials, final: Path) -> Path:
    record = final / RECORD
    cached = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else None
    client = _client(creds)
    try:
        listing = _listing(client, loc)
    except Exception as e:
        if cached is None:
            raise
        log.warning(
            "%s: cannot list it (%s); using the copy fetched %s", loc.url, creds.scrub(_why(e)), cached["fetched"]
        )
        return _entry(final, cached["objects"])
    if not listing:
        raise ModelError(f"{loc.url}: no objects there (bucket {loc.bucket!r}, prefix {loc.prefix!r})")
    strip = {k: {"size": v["size"], "etag": v["etag"]} for k, v in listing.items()}
    if cached is not None and cached.get("objects") == strip:
        return _entry(final, strip)
    partial = final.with_name(final.name + ".partial")
    total = sum(v["size"] for v in listing.values())
    log.info("fetching %s: %d objects, %.1f MB, into %s", loc.url, len(listing), total / 1e6, final)
    for rel, obj in listing.items():
        _download(client, loc, obj, partial / rel)
    extra = [p for p in partial.rglob("*") if p.is_file() and p.relative_to(partial).as_posix() not in listing]
    for p in extra:  # left by an older listing of the same prefix
        p.unlink()
    rec = {
        "source": loc.url,
        "endpoint": creds.endpoint,
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "objects": strip,
    }
    (partial / RECORD).write_text(json.dumps(rec, indent=2) + "\n", encoding="utf-8")
    if final.exists():  # a stale copy: out of the way first, then the complete folder in one rename
        old = final.with_name(f"{final.name}.old-{os.getpid()}")
        final.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    partial.rename(final)
    return _entry(final, strip)


def _entry(folder: Path, objects: dict) -> Path:
    """A folder's path; for a single object (a .gguf file), the file's."""
    if len(objects) == 1:
        (name,) = objects
        if "/" not in name and not (folder / "config.json").exists() and name.endswith(".gguf"):
            return folder / name
    return folder


def preflight(path: str, owner: str) -> None:
    """Before any work: the path parses and its cluster's credentials are there (no network)."""
    try:
        credentials(parse(path))
    except ModelError as e:
        raise FileNotFoundError(f"{owner}: {e}") from None


def local_path(path: str | None) -> str | None:
    """`path` itself, or for an object-storage path its local copy."""
    if not is_remote(path):
        return path
    return str(fetch(str(path)))
