"""Blobs and bundles: content-addressed bytes (a task's arguments and results, a bundle's files) that
travel in pieces, and the versioned bundles made of them.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gridd.protocol.base import Reply, Request
from gridd.protocol.fields import MAX_BUNDLE_FILES, BlobId, BundleName, BundleRef, Count
from gridd.protocol.records import BundleFile, BundleView

BLOB_CHUNK_BYTES = 4 * 1024 * 1024  # a blob travels in pieces of at most this size
MAX_BLOB_BYTES = 1024 * 1024 * 1024  # a task's arguments or result may not exceed this (1 GiB)


class BlobStored(Reply, frozen=True, tag="blob.stored"):
    """`have`: bytes the broker holds, from the start (== size: the blob is complete)."""

    have: Count


class PutBlob(Request[BlobStored], frozen=True, tag="blob.put"):
    """A piece of a content-addressed blob of `size` bytes, at `offset`. The broker keeps what arrives in
    order; once all is there and hashes to `blob`, the blob exists. Resumable: the reply says how much
    the broker has, and a blob it already holds is never sent again."""

    blob: BlobId
    size: Annotated[int, msgspec.Meta(ge=0, le=MAX_BLOB_BYTES)]
    offset: Annotated[int, msgspec.Meta(ge=0, le=MAX_BLOB_BYTES)]
    data: Annotated[bytes, msgspec.Meta(max_length=BLOB_CHUNK_BYTES)]


class BlobRead(Reply, frozen=True, tag="blob.read"):
    """Up to BLOB_CHUNK_BYTES of the blob from `offset`, and its whole size."""

    size: Count
    data: bytes


class GetBlob(Request[BlobRead], frozen=True, tag="blob.get"):
    blob: BlobId
    offset: Annotated[int, msgspec.Meta(ge=0, le=MAX_BLOB_BYTES)] = 0


class BundlePushed(Reply, frozen=True, tag="bundle.pushed"):
    """`missing` empty: `version` holds the files (`created` False: it already did). Else nothing was
    made (version 0) and `missing` names the blobs to upload first."""

    version: Count
    created: bool
    missing: list[BlobId] = msgspec.field(default_factory=list)
    digest: str = ""


class PushBundle(Request[BundlePushed], frozen=True, tag="bundle.push"):
    """Make `files` the next version of bundle `name`. Refused while the broker lacks some of their
    blobs: the reply lists those (upload them with PutBlob, then push again), so that no version ever
    names content the broker does not hold. A manifest equal to the latest version's makes no new one."""

    name: BundleName
    files: Annotated[list[BundleFile], msgspec.Meta(max_length=MAX_BUNDLE_FILES)]


class BundlesListed(Reply, frozen=True, tag="bundle.listed"):
    bundles: list[BundleView]


class ListBundles(Request[BundlesListed], frozen=True, tag="bundle.list"):
    """Every version of every bundle (or of bundle `name`), by name then version."""

    name: BundleName | None = None


class BundleGot(Reply, frozen=True, tag="bundle.got"):
    bundle: BundleView
    files: list[BundleFile]


class GetBundle(Request[BundleGot], frozen=True, tag="bundle.get"):
    """The manifest of "NAME@N" (or of NAME's latest version)."""

    ref: BundleRef
