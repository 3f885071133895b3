"""Registration, login (JSON or OAuth2 password form) and the caller's own profile."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import structlog
from pydantic import ValidationError
from quart import Blueprint, current_app, request
from quart_schema import document_request, validate_response
from quart_schema.validation import RequestSchemaValidationError

from app.api.context import (
    current_caller,
    current_user_id,
    daos,
    document_errors,
    documents_no_content,
    requires_auth,
    settings,
    transaction,
)
from app.api.validation import json_body, request_json
from app.db.database import Work
from app.db.executor import Executor
from app.errors import Conflict, TooManyRequests, Unauthorized
from app.http.metrics import record_login_failure
from app.http.traffic import password_work
from app.models.login_attempts import LOGIN_ADDRESS_LENGTH, LoginLimits, LoginRefused
from app.models.organizations import OrganizationWithRole
from app.models.users import UserRow
from app.schemas import (
    LoginRequest,
    LogoutRequest,
    MeOut,
    OrganizationRoleOut,
    RegisterRequest,
    TokenOut,
    UserOut,
)
from app.security import check_password, hash_password, issue_token

bp = Blueprint("auth", __name__)
log = structlog.get_logger(__name__)

LOGIN_ATTEMPTS_LOCK = "login_attempts_lock"
T = TypeVar("T")

FORM_MIMETYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}


@bp.post("/auth/register")
@document_errors(409, 422)
@json_body(RegisterRequest)
@validate_response(UserOut, 201)
@password_work
async def register(data: RegisterRequest) -> tuple[UserOut, int]:
    password_hash = await hash_password(data.password)
    user = await transaction(
        lambda x: daos().users.create(x, data.name, password_hash), single_statement=True
    )
    if user is None:
        raise Conflict("user name already taken")
    return UserOut.model_validate(user), 201


@bp.post("/auth/login")
@document_errors(401, 422, 429)
@document_request(LoginRequest)
@validate_response(TokenOut, 200)
@password_work
async def login() -> TokenOut:
    """Exchange a user name and password for a bearer token (JSON or OAuth2 form body).

    Unknown users and wrong passwords get the same 401 after the same amount of work. After
    too many failed logins for the user name, or from the client's address, within the
    window, the answer is 429 with `Retry-After` (seconds), and the password is not checked.
    """
    credentials = await _login_request()
    outcome = await check_credentials(credentials.username, credentials.password)
    if isinstance(outcome, LoginRefused):
        raise TooManyRequests(outcome.retry_after_seconds)
    if outcome is None:
        raise Unauthorized("incorrect user name or password")
    return issue(outcome)


@bp.post("/auth/logout")
@document_errors(401, 422)
@documents_no_content
@requires_auth
@json_body(LogoutRequest)
async def logout(data: LogoutRequest) -> tuple[str, int]:
    """Refuse the presented token from now on (204); other tokens of the caller stay valid.
    With `{"everywhere": true}`, every token of the caller issued so far is refused."""
    caller = current_caller()
    if data.everywhere:
        await transaction(lambda x: daos().sessions.end_all(x, caller.user_id))
    else:
        await transaction(lambda x: daos().sessions.revoke(x, caller), single_statement=True)
    return "", 204


@dataclass(frozen=True)
class LoggedIn:
    """A user whose password was just checked, in the token generation it was checked in."""

    user_id: uuid.UUID
    generation: int


def issue(user: LoggedIn) -> TokenOut:
    ttl = settings().token_ttl_seconds
    token = issue_token(user.user_id, settings().signing_key(), ttl, user.generation)
    return TokenOut(access_token=token, expires_in=ttl)


async def check_credentials(name: str, password: str) -> LoggedIn | LoginRefused | None:
    """Check a password under the login limits: who it belongs to, LoginRefused (429) when
    the limits say no, None when it is wrong. Every check counts as a login attempt, whether
    it comes from a login, a password change or an account deletion."""
    credentials = LoginRequest(username=name, password=password)
    # Shielded: a client that hangs up (Quart then cancels this handler) does not leave its
    # attempt in progress, where it would count against the name and the address as a
    # failure once LOGIN_CHECK_TIMEOUT passes. The attempt is settled as if the client had
    # stayed, so hanging up cannot dodge a failure either.
    logging_in = asyncio.ensure_future(
        _log_in(credentials, client_address(request.remote_addr), _limits())
    )
    try:
        return await asyncio.shield(logging_in)
    except asyncio.CancelledError:
        logging_in.add_done_callback(_report_unsettled)
        raise


async def _log_in(
    credentials: LoginRequest, address: str, limits: LoginLimits
) -> LoggedIn | LoginRefused | None:
    """Check the limits, then the password, and record the outcome: the user if the
    password was right, None if not."""
    name, password = credentials.username, credentials.password
    attempt = await _on_attempts(lambda x: daos().login_attempts.begin(x, name, address, limits))
    if isinstance(attempt, LoginRefused):
        record_login_failure("rate_limited")
        return attempt
    check = await check_password(password, attempt.password_hash)
    if attempt.user_id is None or not check.valid:
        await _on_attempts(lambda x: daos().login_attempts.fail(x, attempt.id))
        record_login_failure("invalid_credentials")
        return None
    user_id, checked_hash = attempt.user_id, attempt.password_hash
    await _on_attempts(lambda x: daos().login_attempts.succeed(x, attempt.id, name))
    if check.new_hash is not None:
        new_hash = check.new_hash
        await transaction(
            lambda x: daos().users.set_password_hash(x, user_id, new_hash), single_statement=True
        )
        checked_hash = new_hash
    user = await transaction(lambda x: daos().users.get(x, user_id), single_statement=True)
    if user is None or user.password_hash != checked_hash:
        return None  # deleted, or its password changed, while this one was being checked
    return LoggedIn(user_id, user.token_generation)


def _report_unsettled(logging_in: asyncio.Future[Any]) -> None:
    """After a hang-up nobody awaits the login any more: say if it could not be settled (the
    attempt then counts as failed once LOGIN_CHECK_TIMEOUT passes)."""
    error = None if logging_in.cancelled() else logging_in.exception()
    if error is not None:
        log.warning("login left unsettled after a hang-up", error_type=type(error).__name__)


async def _on_attempts(work: Work[T]) -> T:
    """Run a login_attempts statement, one at a time in this worker. Concurrent logins for one
    name or from one address read and write the same rows, so at SERIALIZABLE most of them
    failed and were re-run; queued here, they do not conflict at all within a worker, and each
    statement is short. Other workers and replicas still conflict now and then, and the
    database still decides."""
    lock: asyncio.Lock | None = current_app.extensions.get(LOGIN_ATTEMPTS_LOCK)
    if lock is None:
        lock = current_app.extensions[LOGIN_ATTEMPTS_LOCK] = asyncio.Lock()
    async with lock:
        return await transaction(work, single_statement=True)


def client_address(remote_addr: str | None) -> str:
    """What a client's failed logins count against: the peer address the server saw, never a
    header such as X-Forwarded-For, which any client can set. IPv6 clients count per /64,
    the block one subscriber usually holds, so hopping addresses inside it gains nothing.
    """
    raw = (remote_addr or "").strip()
    try:
        ip = ipaddress.ip_address(raw.split("%", 1)[0])  # without an IPv6 zone
    except ValueError:
        return raw[:LOGIN_ADDRESS_LENGTH] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _limits() -> LoginLimits:
    current = settings()
    return LoginLimits(
        max_per_user=current.login_max_failures_per_user,
        max_per_address=current.login_max_failures_per_address,
        window=timedelta(seconds=current.login_failure_window_seconds),
        max_concurrent_checks=current.login_max_concurrent_checks,
    )


async def _login_request() -> LoginRequest:
    """The credentials, from a form (OAuth2 password flow) or from a JSON body."""
    data: Any
    if request.mimetype in FORM_MIMETYPES:
        data = (await request.form).to_dict()
    else:
        data = await request_json()
    try:
        return LoginRequest.model_validate(data)
    except ValidationError as error:
        raise RequestSchemaValidationError(error) from None


@bp.get("/me")
@document_errors(401)
@validate_response(MeOut, 200)
@requires_auth
async def me() -> MeOut:
    user_id = current_user_id()

    async def load(executor: Executor) -> tuple[UserRow | None, list[OrganizationWithRole]]:
        user = await daos().users.get(executor, user_id)
        if user is None:
            return None, []
        return user, await daos().organizations.list_with_roles(executor, user_id)

    user, organizations = await transaction(load)
    if user is None:  # the token is valid but its user was deleted
        raise Unauthorized("user no longer exists")
    return MeOut(
        id=user.id,
        name=user.name,
        created_at=user.created_at,
        organizations=[
            OrganizationRoleOut(id=o.id, name=o.name, role=o.role.value) for o in organizations
        ],
    )
