"""Endpoints of existing operations (snapshot, events, resume, cancel) and of the
caller's account: all on the fail-open `operations` rate-limit route."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import ratelimit
from checkpoints import Operation

from .._errors import NotFound
from ._auth import Principal
from ._negotiation import event_cursor, path_id
from ._respond import holds_connection, respond, snapshot, stream_response, take_stream_slot
from ._responses import AccountBody, DevToken
from ._route_limits import limited_by
from ._services import Services, services_of

#: How long `cancel` waits for the run to stop before answering 202 with a snapshot.
CANCEL_WAIT_S = 10.0


async def _operation_of(
    request: Request, *, link_token: bool = False, running_here: bool = False
) -> tuple[Services, Principal, Operation]:
    """The caller and the operation of the path, if it is theirs (anyone else's → 404).
    `link_token`: the short-lived token of `links.events` is accepted too.
    `running_here`: an operation this process runs is taken as it was when its run
    started (its owner never changes), without a database read."""
    svc = services_of(request)
    if link_token:
        principal = await svc.auth.user_or_events_token(
            request, request.path_params["operation_id"])
    else:
        principal = await svc.auth.user(request)
    operation_id = path_id(request, "operation_id")
    if operation_id is None:
        raise NotFound("no such operation")
    op = svc.operations.running_here(operation_id) if running_here else None
    if op is None:
        op = await svc.store.get_operation(operation_id, user_id=principal.user_id)
    elif op.user_id != principal.user_id:
        raise NotFound("no such operation")
    return svc, principal, op


@limited_by("operations")
async def get_operation(request: Request) -> Response:
    svc, principal, op = await _operation_of(request)
    decision = await ratelimit.enforce_rate_limit("operations", request, principal.user_id)
    return JSONResponse(await snapshot(svc, op), headers=decision.headers)


@limited_by("operations")
async def operation_events(request: Request) -> Response:
    svc, principal, op = await _operation_of(request, link_token=True, running_here=True)
    cursor = event_cursor(request) or 0
    decision = await ratelimit.enforce_rate_limit("operations", request, principal.user_id)
    if op.is_finished and op.last_seq <= cursor:
        return Response(status_code=204, headers=decision.headers)
    await svc.operations.take_over_if_orphaned(op)
    return await stream_response(svc, op.id, cursor, decision.headers, principal.user_id)


@limited_by("operations")
async def resume_operation(request: Request) -> Response:
    svc, principal, op = await _operation_of(request, link_token=True)
    given = event_cursor(request)
    decision = await ratelimit.enforce_rate_limit("operations", request, principal.user_id)
    cursor = op.last_seq if given is None else given
    # The stream (or the wait) is counted before the run restarts: a 429 starts nothing.
    slot = await take_stream_slot(svc, principal.user_id) if holds_connection(request) else None
    try:
        await svc.operations.resume(op)
        return await respond(request, op, after=cursor, principal=principal,
                             headers=decision.headers, stream_slot=slot)
    except BaseException:
        if slot is not None:
            await slot.release()
        raise


@limited_by("operations")
async def cancel_operation(request: Request) -> Response:
    svc, principal, op = await _operation_of(request)
    decision = await ratelimit.enforce_rate_limit("operations", request, principal.user_id)
    if not op.is_finished:
        await svc.operations.cancel(op)
        ended = await svc.operations.wait_until_finished(op.id, CANCEL_WAIT_S)
        if ended is None:
            current = await svc.store.get_operation(op.id)
            return JSONResponse(await snapshot(svc, current), status_code=202,
                                headers=decision.headers)
        return JSONResponse(await snapshot(svc, ended.operation, ended.steps),
                            headers=decision.headers)
    return JSONResponse(await snapshot(svc, op), headers=decision.headers)


@limited_by("operations")
async def get_account(request: Request) -> Response:
    svc = services_of(request)
    user = (await svc.auth.user(request)).user_id
    decision = await ratelimit.enforce_rate_limit("operations", request, user)
    account = await svc.accounts.get(user)
    body = AccountBody.model_validate({"user_id": account.user_id, "tier": account.tier.name,
                                       "credits_remaining": account.credits_remaining})
    return JSONResponse(body.model_dump(), headers=decision.headers)


async def dev_token(request: Request) -> Response:
    """A demo user's token (dev mode only: the route exists without AUTH_JWT_SECRET)."""
    svc = services_of(request)
    token = svc.auth.issue_user_token("demo-user", ttl_s=24 * 3600)
    return JSONResponse(DevToken(token=token).model_dump())
