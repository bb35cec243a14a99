"""S3 store (boto3), for Amazon S3 and S3-compatible servers (Ceph RGW, SeaweedFS).

Locations are ``s3://host[:port]/bucket/key`` (``s3+https://`` for an https endpoint),
without credentials: Glance embedded the access and secret key in the URL and now
rewrites such locations without them; the keys come from the store's configuration,
and legacy URLs that still carry them are understood (the user part is ignored).

Data that fits in one part (s3_store_large_object_chunk_size) and is below
s3_store_large_object_size goes in one PUT, which S3 makes visible only when complete.
Anything larger is a multipart upload, invisible until it is completed and aborted on
any error; an upload a crashed worker left behind is listed by ``list_data`` as in
progress (``?upload_id=``) so a sweep can abort it.

Memory: an upload holds at most ``parts_in_flight`` parts at once (uploading or being
filled): s3_store_thread_pools, but no more than BYTES_IN_FLIGHT allows at the part
size (Glance's defaults, 10 threads of 10 MB parts, would be 100 MB per upload).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from glimpse.stores.base import (
    Credentials,
    DataEntry,
    DataNotFound,
    Store,
    StoredData,
    StoreError,
    StoreForbidden,
    StoreFull,
    StoreUnavailable,
)
from glimpse.stores.parts import check_object_name, fixed_parts, is_object_name

MIB = 1024 * 1024
READ_SIZE = 1 * MIB
MIN_PART_SIZE = 5 * MIB  # S3's smallest part but the last
MAX_PARTS = 10_000
# The most part data one upload holds at once, whatever s3_store_thread_pools says (at
# least two parts: one uploading while the next is filled). At Glance's default part
# size that is 2 parts of 10 MiB: a worker with every store kind configured stays near
# 200 MiB during a 1 GiB upload (3 parts: about 215 MiB).
BYTES_IN_FLIGHT = 20 * MIB

# One boto3 session for the process: each session loads the S3 service model again
# (about 13 MiB per S3 store); clients made from one session share it.
_SESSION: boto3.session.Session | None = None
_SESSION_LOCK = threading.Lock()


def _client(**kwargs):  # noqa: ANN003, ANN202 - a boto3 S3 client
    global _SESSION
    with _SESSION_LOCK:  # creating clients is not thread-safe within a session
        if _SESSION is None:
            _SESSION = boto3.session.Session()
        return _SESSION.client("s3", **kwargs)

_FORBIDDEN = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
              "AllAccessDisabled", "AccountProblem", "InvalidToken", "ExpiredToken"}
_FULL = {"EntityTooLarge", "QuotaExceeded", "XAmzContentSHA256Mismatch_NoSpace"}
_NOT_FOUND = {"NoSuchKey", "NoSuchUpload", "404", "NotFound"}


class S3Store(Store):
    type = "s3"

    def __init__(self, name: str, *, host: str, access_key: str, secret_key: str,
                 bucket: str, create_bucket_on_put: bool = False,
                 bucket_url_format: str = "auto", large_object_size: int = 100 * MIB,
                 large_object_chunk_size: int = 10 * MIB, thread_pools: int = 10,
                 region_name: str = "", cacert: str | None = None, description: str = "",
                 connect_timeout: float = 10, read_timeout: float = 60, retries: int = 3):
        super().__init__(name, description)
        if not host or not bucket:
            raise ValueError(f"Store {name}: s3_store_host and s3_store_bucket are required")
        if large_object_chunk_size < MIN_PART_SIZE:
            raise ValueError(f"Store {name}: s3_store_large_object_chunk_size must be at "
                             f"least {MIN_PART_SIZE // MIB} MB")
        if thread_pools <= 0:
            raise ValueError(f"Store {name}: s3_store_thread_pools must be positive")
        if bucket_url_format not in ("auto", "path", "virtual"):
            raise ValueError(f"Store {name}: s3_store_bucket_url_format must be auto, "
                             "path or virtual")
        if host.startswith("https://"):
            self.scheme, endpoint = "s3+https", host
        elif host.startswith("http://"):
            self.scheme, endpoint = "s3", host
        else:
            self.scheme, endpoint = "s3", "http://" + host
        self.endpoint = endpoint.rstrip("/")
        self.netloc = urlsplit(self.endpoint).netloc
        self.bucket = bucket
        self.create_bucket_on_put = create_bucket_on_put
        self.large_object_size = large_object_size
        self.part_size = large_object_chunk_size
        self.thread_pools = thread_pools
        self.parts_in_flight = max(2, min(thread_pools, BYTES_IN_FLIGHT // self.part_size))
        self.client = _client(
            endpoint_url=self.endpoint, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key, region_name=region_name or "us-east-1",
            verify=cacert or None,
            config=Config(
                signature_version="s3v4", s3={"addressing_style": bucket_url_format},
                connect_timeout=connect_timeout, read_timeout=read_timeout,
                retries={"max_attempts": retries, "mode": "standard"},
                max_pool_connections=self.parts_in_flight + 4,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ))
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    def properties(self) -> dict:
        """What GET /v2/info/stores/detail shows of this store (Glance's keys, bytes)."""
        return {"s3_store_large_object_size": self.large_object_size,
                "s3_store_large_object_chunk_size": self.part_size,
                "s3_store_thread_pools": self.thread_pools}

    # ------------------------------------------------------------ URLs

    def _url(self, key: str, upload_id: str | None = None) -> str:
        url = f"{self.scheme}://{self.netloc}/{self.bucket}/{key}"
        return url if upload_id is None else f"{url}?upload_id={upload_id}"

    def _parse(self, url: str) -> tuple[str, str | None]:
        """The key (and in-progress upload id) of one of this store's URLs."""
        try:
            parts = urlsplit(url)
        except ValueError:
            raise DataNotFound(f"Not an S3 location of store {self.name}") from None
        scheme_ok = parts.scheme == self.scheme or (
            self.scheme == "s3" and parts.scheme == "s3+http")
        netloc = parts.netloc.rsplit("@", 1)[-1]  # legacy URLs carry access:secret@
        path = parts.path.split("/")
        if (not scheme_ok or netloc != self.netloc or parts.fragment or len(path) != 3
                or path[0] != "" or path[1] != self.bucket or not is_object_name(path[2])):
            raise DataNotFound(f"Not an S3 location of store {self.name}")
        upload_id = None
        if parts.query:
            query = parse_qs(parts.query, strict_parsing=True)
            if set(query) != {"upload_id"} or len(query["upload_id"]) != 1:
                raise DataNotFound(f"Not an S3 location of store {self.name}")
            upload_id = query["upload_id"][0]
        return path[2], upload_id

    def owns(self, url: str) -> bool:
        try:
            self._parse(url)
        except StoreError:
            return False
        return True

    def _committed_key(self, url: str) -> str:
        key, upload_id = self._parse(url)
        if upload_id is not None:
            raise DataNotFound(f"Image data at {self._url(key)} is still being uploaded")
        return key

    # ------------------------------------------------------------ add

    def add(self, image_id: str, chunks: Iterable[bytes],
            creds: Credentials | None = None) -> StoredData:
        key = check_object_name(image_id)
        self._ensure_bucket()
        parts = fixed_parts(chunks, self.part_size)
        first = next(parts, bytearray())
        second = next(parts, None)
        if second is None and (len(first) < self.large_object_size or not first):
            self._call(self.client.put_object, Bucket=self.bucket, Key=key, Body=first)
            return StoredData(url=self._url(key), size=len(first))
        head = [first] if second is None else [first, second]
        del first, second  # held by ``head`` only, until they are uploaded
        size = self._multipart(key, _drain(head, parts))
        return StoredData(url=self._url(key), size=size)

    def _multipart(self, key: str, parts: Iterator[bytearray]) -> int:
        upload_id = self._call(self.client.create_multipart_upload,
                               Bucket=self.bucket, Key=key)["UploadId"]
        size = 0
        pending: set[Future] = set()
        done: list[dict] = []
        # s3_store_thread_pools parts upload at once (at most parts_in_flight)
        pool = ThreadPoolExecutor(min(self.thread_pools, self.parts_in_flight),
                                  thread_name_prefix=f"s3-{self.name}")
        try:
            number = 0
            while True:
                # Back-pressure: the next part is read only once there is room for it,
                # so at most parts_in_flight parts exist (uploading or being filled).
                while len(pending) >= self.parts_in_flight:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    done.extend(f.result() for f in finished)
                body = next(parts, None)
                if body is None:
                    break
                number += 1
                if number > MAX_PARTS:
                    raise StoreError(f"Image needs more than {MAX_PARTS} parts: raise "
                                     "s3_store_large_object_chunk_size")
                size += len(body)
                pending.add(pool.submit(self._upload_part, key, upload_id, number, body))
                del body
            finished, pending = wait(pending), set()
            done.extend(f.result() for f in finished.done)
            done.sort(key=lambda part: part["PartNumber"])
            self._call(self.client.complete_multipart_upload, Bucket=self.bucket, Key=key,
                       UploadId=upload_id, MultipartUpload={"Parts": done})
        except BaseException:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True)
            self._abort(key, upload_id)
            raise
        pool.shutdown(wait=True)
        return size

    def _upload_part(self, key: str, upload_id: str, number: int, body: bytearray) -> dict:
        answer = self._call(self.client.upload_part, Bucket=self.bucket, Key=key,
                            UploadId=upload_id, PartNumber=number, Body=body)
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError):
            pass  # the upload stays listed as in progress: the sweep removes it

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if self._bucket_ready:
                return
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _status(exc) != 404:
                    raise _mapped(exc) from exc
                if not self.create_bucket_on_put:
                    raise StoreError(f"The bucket {self.bucket} does not exist in S3 (set "
                                     "s3_store_create_bucket_on_put to create it)") from exc
                self._call(self.client.create_bucket, Bucket=self.bucket)
            except BotoCoreError as exc:
                raise _mapped(exc) from exc
            self._bucket_ready = True

    # ------------------------------------------------------------ read / delete

    def get(self, url: str, offset: int = 0, length: int | None = None,
            creds: Credentials | None = None) -> Iterator[bytes]:
        key = self._committed_key(url)
        return self._stream(key, offset, length)

    def _stream(self, key: str, offset: int, length: int | None) -> Iterator[bytes]:
        if length == 0:
            self.size(self._url(key))
            return
        request = {"Bucket": self.bucket, "Key": key}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            request["Range"] = f"bytes={offset}-{end}"
        try:
            body = self.client.get_object(**request)["Body"]
        except ClientError as exc:
            if _code(exc) == "InvalidRange" or _status(exc) == 416:
                return  # offset at or past the end: nothing to read
            raise _mapped(exc, key) from exc
        except BotoCoreError as exc:
            raise _mapped(exc) from exc
        try:
            yield from body.iter_chunks(READ_SIZE)
        except BotoCoreError as exc:
            raise _mapped(exc) from exc
        finally:
            body.close()

    def size(self, url: str, creds: Credentials | None = None) -> int:
        key = self._committed_key(url)
        head = self._call(self.client.head_object, Bucket=self.bucket, Key=key, _key=key)
        return int(head["ContentLength"])

    def delete(self, url: str, creds: Credentials | None = None) -> None:
        key, upload_id = self._parse(url)
        if upload_id is not None:
            self._call(self.client.abort_multipart_upload, Bucket=self.bucket, Key=key,
                       UploadId=upload_id, _key=key)
            return
        # DELETE succeeds for a missing key: look first, so a second delete is DataNotFound.
        self._call(self.client.head_object, Bucket=self.bucket, Key=key, _key=key)
        self._call(self.client.delete_object, Bucket=self.bucket, Key=key)

    def list_data(self) -> Iterator[DataEntry]:
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket):
                for item in page.get("Contents", []):
                    if is_object_name(item["Key"]):
                        yield DataEntry(self._url(item["Key"]), True,
                                        item["LastModified"].timestamp(), int(item["Size"]))
            for page in self.client.get_paginator("list_multipart_uploads").paginate(
                    Bucket=self.bucket):
                for item in page.get("Uploads", []):
                    if is_object_name(item["Key"]):
                        yield DataEntry(self._url(item["Key"], item["UploadId"]), False,
                                        item["Initiated"].timestamp())
        except ClientError as exc:
            if _code(exc) == "NoSuchBucket":
                return
            raise _mapped(exc) from exc
        except BotoCoreError as exc:
            raise _mapped(exc) from exc

    def _call(self, method, *, _key: str | None = None, **kwargs):  # noqa: ANN001, ANN202
        try:
            return method(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _mapped(exc, _key) from exc


def _drain(head: list[bytearray], rest: Iterator[bytearray]) -> Iterator[bytearray]:
    """The parts of ``head`` then of ``rest``, keeping no reference to a part handed out."""
    while head:
        yield head.pop(0)
    yield from rest


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _mapped(exc: Exception, key: str | None = None) -> StoreError:
    """A typed store error for a boto3 failure; never the credentials or the raw URL."""
    if isinstance(exc, ClientError):
        code, status = _code(exc), _status(exc)
        if key is not None and (code in _NOT_FOUND or status == 404):
            return DataNotFound(f"Image data not found in S3 (key {key})")
        if code in _FORBIDDEN or status in (401, 403):
            return StoreForbidden(f"S3 refused the request ({code or status})")
        if code in _FULL or status in (413, 507):
            return StoreFull(f"S3 has no room for the image ({code or status})")
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
            return StoreUnavailable(f"S3 answered with a server error ({code or status})")
        return StoreError(f"S3 request failed ({code or status})")
    if isinstance(exc, EndpointConnectionError):
        return StoreUnavailable("S3 endpoint cannot be reached")
    return StoreUnavailable(f"S3 request failed: {type(exc).__name__}")
