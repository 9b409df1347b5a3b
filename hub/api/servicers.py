"""grpc.aio servicers: parse → service call → convert. No rules live here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from google.protobuf.message import Message
from grpc import aio
from spimeforge.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    designs_pb2,
    designs_pb2_grpc,
    records_pb2,
    records_pb2_grpc,
)

from hub import limits
from hub.api import convert as cv
from hub.api.interceptors import current_account
from hub.errors import ResourceExhausted
from hub.keys import fingerprint
from hub.service import Hub
from hub.service.blobs import Chunk
from hub.service.designs import proposal_token

__all__ = ["AccountsServicer", "DesignsServicer", "RecordsServicer"]


class AccountsServicer(accounts_pb2_grpc.AccountsServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def WhoAmI(self, request: accounts_pb2.WhoAmIRequest, context: aio.ServicerContext) -> accounts_pb2.Account:
        return cv._account_to_proto(current_account())

    async def GetHubKey(self, request: accounts_pb2.GetHubKeyRequest,
                        context: aio.ServicerContext) -> accounts_pb2.HubKey:
        key = self.hub.accounts.hub_public_key
        return accounts_pb2.HubKey(public_key=key, fingerprint=fingerprint(key))

    async def RegisterKey(self, request: accounts_pb2.RegisterKeyRequest,
                          context: aio.ServicerContext) -> accounts_pb2.KeyRegistration:
        reg = await self.hub.accounts.register_key(current_account(), request.public_key, request.signed_at,
                                                   request.proof)
        return cv._key_to_proto(reg)

    async def ListKeys(self, request: accounts_pb2.ListKeysRequest,
                       context: aio.ServicerContext) -> accounts_pb2.ListKeysResponse:
        regs = await self.hub.accounts.list_keys(current_account(), request.account)
        return accounts_pb2.ListKeysResponse(keys=[cv._key_to_proto(r) for r in regs],
                                             hub_public_key=self.hub.accounts.hub_public_key)

    async def RevokeKey(self, request: accounts_pb2.RevokeKeyRequest,
                        context: aio.ServicerContext) -> accounts_pb2.KeyRegistration:
        reg = await self.hub.accounts.revoke_key(current_account(), request.fingerprint, request.effective_at,
                                                 request.account)
        return cv._key_to_proto(reg)




EXPORT_CHUNK_BYTES = 1 << 20  # records.proto: Export streams the document in chunks of at most 1 MiB
# hub.api.server.MAX_MESSAGE_BYTES (twice PAGE_MAX_BYTES; server imports this module) less room for the rest.
_ANSWER_MAX_BYTES = 2 * limits.PAGE_MAX_BYTES - 64 * 1024


def _sendable(revision: designs_pb2.Revision) -> designs_pb2.Revision:
    """A revision answer, refused when no message could carry it (an older hub stored such remixes).

    Raises:
        ResourceExhausted: the revision is over the message limit (retrying cannot help).
    """
    size = revision.ByteSize()
    if size > _ANSWER_MAX_BYTES:
        raise ResourceExhausted(
            f"revision {revision.design}@{revision.id[:12]} ({len(revision.files):,} files) is {size:,} bytes, over "
            f"the {_ANSWER_MAX_BYTES:,} one answer may carry; it cannot be sent, read its record or export instead",
            retryable=False, reason="ANSWER_TOO_LARGE")
    return revision


def _page(items: Sequence[Message], wanted: int) -> int:
    """How many of the first ``wanted`` items one answer carries within limits.PAGE_MAX_BYTES."""
    return limits.cut_page([item.ByteSize() for item in items[:wanted]]).count


# Per-account concurrency and rate limits (hub.limits) are applied by the interceptor before a
# request is decoded (hub.api.interceptors, hub.workers.Admission), for every servicer; the field
# limits as it is decoded (hub.api.field_limits).
class DesignsServicer(designs_pb2_grpc.DesignsServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def MissingBlobs(self, request, context):  # type: ignore[no-untyped-def]
        return designs_pb2.MissingBlobsResponse(sha256=await self.hub.blobs.missing(list(request.sha256)))

    async def UploadBlob(self, request_iterator: AsyncIterator[Chunk], context):  # type: ignore[no-untyped-def]
        # The interceptor decodes the chunks (hub.api.blob_wire), their bytes as views, no copies.
        result = await self.hub.blobs.upload(request_iterator)
        return designs_pb2.UploadBlobResponse(sha256=result.sha256, size=result.size, already_present=result.already_present)

    async def DownloadBlob(self, request, context):  # type: ignore[no-untyped-def]
        async for chunk in self.hub.blobs.download(request.sha256, int(request.offset)):
            yield cv._chunk_to_proto(chunk)

    async def Push(self, request, context):  # type: ignore[no-untyped-def]
        return cv._push_to_proto(await self.hub.designs.push(current_account(), cv._push_from_proto(request)))

    async def GetDesign(self, request, context):  # type: ignore[no-untyped-def]
        return cv._design_to_proto(await self.hub.designs.get_design(request.design))

    async def GetRevision(self, request, context):  # type: ignore[no-untyped-def]
        return _sendable(cv._revision_to_proto(await self.hub.designs.get_revision(request.design, request.revision_id)))

    async def Log(self, request, context):  # type: ignore[no-untyped-def]
        # Old clients send no page: their limit (0 = as many as one page may hold) is the page size.
        wanted = request.page.page_size if request.HasField("page") else request.limit or limits.MAX_PAGE_SIZE
        size = limits.check_page_size(int(wanted), "Log")
        start = request.page.page_token or request.from_revision_id
        revisions = await self.hub.designs.log(request.design, start, size + 1)
        protos = [cv._revision_to_proto(r) for r in revisions[:size]]
        count = _page(protos, size)
        if protos:
            _sendable(protos[0])  # a page always carries its first revision, the others were cut to fit
        token = revisions[count].id if count < len(revisions) else ""
        return designs_pb2.LogResponse(revisions=protos[:count], next_page_token=token)

    async def Search(self, request, context):  # type: ignore[no-untyped-def]
        size = limits.check_page_size(int(request.page.page_size), "Search")
        found, token = await self.hub.designs.search(
            request.text, request.license, list(request.tags), size, request.page.page_token
        )
        protos = [cv._design_to_proto(d) for d in found]
        count = _page(protos, size)
        if count < len(protos):
            token = found[count - 1].slug
        return designs_pb2.SearchResponse(designs=protos[:count], next_page_token=token)

    async def Fork(self, request, context):  # type: ignore[no-untyped-def]
        design, revision = await self.hub.forks.fork(current_account(), cv._fork_from_proto(request))
        return designs_pb2.ForkResponse(design=cv._design_to_proto(design), revision=cv._revision_to_proto(revision))

    async def ListProposals(self, request, context):  # type: ignore[no-untyped-def]
        size = limits.check_page_size(int(request.page.page_size), "ListProposals")
        token = request.page.page_token
        proposals = await self.hub.designs.list_proposals(request.design, request.include_closed, token, size + 1)
        protos = [cv._proposal_to_proto(p) for p in proposals[:size]]
        count = _page(protos, size)
        more = count < len(proposals)
        return designs_pb2.ListProposalsResponse(
            proposals=protos[:count], next_page_token=proposal_token(proposals[count - 1]) if more else "")

    async def AcceptProposal(self, request, context):  # type: ignore[no-untyped-def]
        proposal, design = await self.hub.designs.accept(current_account(), request.design, request.proposal_id)
        return designs_pb2.AcceptProposalResponse(proposal=cv._proposal_to_proto(proposal), design=cv._design_to_proto(design))

    async def DeclineProposal(self, request, context):  # type: ignore[no-untyped-def]
        proposal = await self.hub.designs.decline(current_account(), request.design, request.proposal_id, request.reason)
        return cv._proposal_to_proto(proposal)

    async def AddMaintainer(self, request, context):  # type: ignore[no-untyped-def]
        design = await self.hub.designs.add_maintainer(
            current_account(), request.design, request.account, self.hub.accounts.accounts._thd_get
        )
        return cv._design_to_proto(design)


class RecordsServicer(records_pb2_grpc.RecordsServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def GetRecord(self, request, context):  # type: ignore[no-untyped-def]
        return cv._record_to_proto(await self.hub.records.get_record(request.design))

    async def Export(self, request, context):  # type: ignore[no-untyped-def]
        media_type, document = await self.hub.records.export(
            request.design, request.revision_id, cv._format_from_proto(request.format)
        )
        view = memoryview(document)
        yield records_pb2.ExportResponse(media_type=media_type, document=bytes(view[:EXPORT_CHUNK_BYTES]),
                                         total_bytes=len(document))
        for start in range(EXPORT_CHUNK_BYTES, len(document), EXPORT_CHUNK_BYTES):
            yield records_pb2.ExportResponse(document=bytes(view[start:start + EXPORT_CHUNK_BYTES]))
