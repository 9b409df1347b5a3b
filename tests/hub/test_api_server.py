"""Server plumbing: health, reflection, TLS, error mapping of unexpected failures, WhoAmI."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from spimeforge.v1 import accounts_pb2, designs_pb2

from hub import errors
from hub.api.interceptors import STATUS_OF, status_of
from hub.api.server import SERVICE_NAMES
from tests.hub.harness import InProcessHub, start_in_process
from tests.hub.harness import self_signed as _self_signed


def test_health_reports_serving_without_a_token(api: InProcessHub) -> None:
    stub = health_pb2_grpc.HealthStub(api.channel)
    for service in ("", "spimeforge.v1.Designs"):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_every_service(api: InProcessHub) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(api.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"spimeforge.v1.Designs", "spimeforge.v1.Accounts", "spimeforge.v1.Records", "grpc.health.v1.Health"} <= names


def test_every_service_is_served_through_its_generic_handler_alone(api: InProcessHub) -> None:
    """No method is registered on its own: grpc.aio would take each call with an asyncio.wait over a
    future per registered method (~40), which a reconnect storm of 10,000 agents pays 10,000 times.
    The services answer all the same (the health, reflection and API tests call them)."""
    assert sorted(api.server.served.services) == sorted(
        (*SERVICE_NAMES, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"))
    stub = health_pb2_grpc.HealthStub(api.channel)
    assert stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_resolves_the_api_descriptors(api: InProcessHub) -> None:
    from google.protobuf import descriptor_pb2

    stub = reflection_pb2_grpc.ServerReflectionStub(api.channel)
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="spimeforge.v1.Designs")
    [response] = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw) for raw in response.file_descriptor_response.file_descriptor_proto]
    assert "spimeforge/v1/designs.proto" in {f.name for f in files}
    designs = next(f for f in files if f.name == "spimeforge/v1/designs.proto")
    assert "Push" in {m.name for m in designs.service[0].method}


def test_whoami_names_the_caller_and_role(any_api: InProcessHub) -> None:
    api = any_api
    account = api.accounts.WhoAmI(accounts_pb2.WhoAmIRequest(), metadata=api.md("olga"))
    assert (account.name, account.role) == ("olga", accounts_pb2.ROLE_OPERATOR)


def test_unexpected_exception_is_internal_and_server_keeps_serving(any_api: InProcessHub) -> None:
    api = any_api
    async def boom(slug: str) -> None:
        raise RuntimeError("a bug")

    real = api.composed.hub.designs.get_design
    api.composed.hub.designs.get_design = boom  # type: ignore[method-assign]
    try:
        with pytest.raises(grpc.RpcError) as info:
            api.designs.GetDesign(designs_pb2.GetDesignRequest(design="x"), metadata=api.md("carol"))
        assert info.value.code() == grpc.StatusCode.INTERNAL and "a bug" not in info.value.details()
    finally:
        api.composed.hub.designs.get_design = real  # type: ignore[method-assign]
    with pytest.raises(grpc.RpcError) as info:
        api.designs.GetDesign(designs_pb2.GetDesignRequest(design="nothing-here"), metadata=api.md("carol"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_every_hub_error_has_a_status() -> None:
    def leaves(cls: type) -> list[type]:
        return [cls] + [c for sub in cls.__subclasses__() for c in leaves(sub)]

    for cls in leaves(errors.HubError)[1:]:
        assert status_of(cls("x")) != grpc.StatusCode.UNKNOWN, cls
    assert status_of(errors.LicenseConflict("x")) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_of(errors.StaleHead("x")) == grpc.StatusCode.ABORTED
    assert status_of(errors.AlreadyClaimed("x")) == grpc.StatusCode.ABORTED
    assert status_of(errors.InvalidTransition("x")) == grpc.StatusCode.FAILED_PRECONDITION
    assert len(STATUS_OF) == len({cls for cls, _ in STATUS_OF})


def test_tls_handshake_and_plaintext_refused(tmp_path: Path) -> None:
    tls = _self_signed(tmp_path)
    api = start_in_process(tmp_path / "data", tls=tls)
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=tls.cert.read_bytes())
        with grpc.secure_channel(api.address, creds) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
            from spimeforge.v1 import accounts_pb2_grpc

            who = accounts_pb2_grpc.AccountsStub(channel).WhoAmI(accounts_pb2.WhoAmIRequest(), metadata=api.md("alice"), timeout=10)
            assert who.name == "alice"
        with grpc.insecure_channel(api.address) as plain:
            with pytest.raises(grpc.RpcError) as info:
                health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        api.stop()
