"""grpc.aio servicers: parse → service call → convert. No rules live here."""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc import aio
from spimeforge.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    common_pb2,
    designs_pb2,
    designs_pb2_grpc,
    records_pb2,
    records_pb2_grpc,
)

from hub.api import convert as cv
from hub.api.interceptors import current_account
from hub.service import Hub
from hub.service.blobs import Chunk

__all__ = ["AccountsServicer", "DesignsServicer", "RecordsServicer"]


class AccountsServicer(accounts_pb2_grpc.AccountsServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def WhoAmI(self, request: accounts_pb2.WhoAmIRequest, context: aio.ServicerContext) -> accounts_pb2.Account:
        return cv._account_to_proto(current_account())


async def _chunks(requests: AsyncIterator[common_pb2.BlobChunk]) -> AsyncIterator[Chunk]:
    async for chunk in requests:
        yield cv._chunk_from_proto(chunk)


class DesignsServicer(designs_pb2_grpc.DesignsServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def MissingBlobs(self, request, context):  # type: ignore[no-untyped-def]
        return designs_pb2.MissingBlobsResponse(sha256=await self.hub.blobs.missing(list(request.sha256)))

    async def UploadBlob(self, request_iterator, context):  # type: ignore[no-untyped-def]
        result = await self.hub.blobs.upload(_chunks(request_iterator))
        return designs_pb2.UploadBlobResponse(sha256=result.sha256, size=result.size, already_present=result.already_present)

    async def DownloadBlob(self, request, context):  # type: ignore[no-untyped-def]
        async for chunk in self.hub.blobs.download(request.sha256, int(request.offset)):
            yield cv._chunk_to_proto(chunk)

    async def Push(self, request, context):  # type: ignore[no-untyped-def]
        return cv._push_to_proto(await self.hub.designs.push(current_account(), cv._push_from_proto(request)))

    async def GetDesign(self, request, context):  # type: ignore[no-untyped-def]
        return cv._design_to_proto(await self.hub.designs.get_design(request.design))

    async def GetRevision(self, request, context):  # type: ignore[no-untyped-def]
        return cv._revision_to_proto(await self.hub.designs.get_revision(request.design, request.revision_id))

    async def Log(self, request, context):  # type: ignore[no-untyped-def]
        revisions = await self.hub.designs.log(request.design, request.from_revision_id, int(request.limit))
        return designs_pb2.LogResponse(revisions=[cv._revision_to_proto(r) for r in revisions])

    async def Search(self, request, context):  # type: ignore[no-untyped-def]
        found, token = await self.hub.designs.search(
            request.text, request.license, list(request.tags), int(request.page.page_size), request.page.page_token
        )
        return designs_pb2.SearchResponse(designs=[cv._design_to_proto(d) for d in found], next_page_token=token)

    async def Fork(self, request, context):  # type: ignore[no-untyped-def]
        design, revision = await self.hub.forks.fork(current_account(), cv._fork_from_proto(request))
        return designs_pb2.ForkResponse(design=cv._design_to_proto(design), revision=cv._revision_to_proto(revision))

    async def ListProposals(self, request, context):  # type: ignore[no-untyped-def]
        proposals = await self.hub.designs.list_proposals(request.design, request.include_closed)
        return designs_pb2.ListProposalsResponse(proposals=[cv._proposal_to_proto(p) for p in proposals])

    async def AcceptProposal(self, request, context):  # type: ignore[no-untyped-def]
        proposal, design = await self.hub.designs.accept(current_account(), request.design, request.proposal_id)
        return designs_pb2.AcceptProposalResponse(proposal=cv._proposal_to_proto(proposal), design=cv._design_to_proto(design))

    async def DeclineProposal(self, request, context):  # type: ignore[no-untyped-def]
        proposal = await self.hub.designs.decline(current_account(), request.design, request.proposal_id, request.reason)
        return cv._proposal_to_proto(proposal)

    async def AddMaintainer(self, request, context):  # type: ignore[no-untyped-def]
        design = await self.hub.designs.add_maintainer(
            current_account(), request.design, request.account, self.hub.accounts.accounts._thd_exists
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
        return records_pb2.ExportResponse(media_type=media_type, document=document)
