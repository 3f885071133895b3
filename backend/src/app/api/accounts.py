"""The caller's own account: changing the password, deleting the account.

Both ask for the password again, checked exactly like a login: the same argon2 work, and a
wrong one counts as a failed login for the login limits, so a stolen token cannot be used
to guess the password, nor to lock its owner out for longer than a login could.
"""

from __future__ import annotations

import uuid

from quart import Blueprint
from quart_schema import validate_response

from app.api.auth import LoggedIn, check_credentials, issue
from app.api.context import (
    current_user_id,
    daos,
    database,
    deletions,
    document_errors,
    documents_no_content,
    requires_auth,
    settings,
    transaction,
)
from app.api.validation import json_body
from app.db.executor import Executor
from app.deletions import PurgeReport, mark_account_deleted, purge_account
from app.errors import Conflict, Forbidden, TooManyRequests, Unauthorized
from app.http.traffic import password_work
from app.models.login_attempts import LoginRefused
from app.schemas import AccountDeletion, PasswordChange, TokenOut
from app.security import hash_password

bp = Blueprint("accounts", __name__)


async def _confirm_password(password: str) -> uuid.UUID:
    """The caller, once `password` proved to be theirs: 403 if it is wrong, 429 when the
    login limits refuse to check it."""
    user_id = current_user_id()
    user = await transaction(lambda x: daos().users.get(x, user_id), single_statement=True)
    if user is None:
        raise Unauthorized("the token is no longer valid: log in again")
    outcome = await check_credentials(user.name, password)
    if isinstance(outcome, LoginRefused):
        raise TooManyRequests(outcome.retry_after_seconds)
    if not isinstance(outcome, LoggedIn) or outcome.user_id != user_id:
        raise Forbidden("the password is not correct")
    return user_id


@bp.post("/me/password")
@document_errors(401, 403, 422, 429)
@validate_response(TokenOut, 200)
@requires_auth
@json_body(PasswordChange)
@password_work
async def change_password(data: PasswordChange) -> TokenOut:
    """Set a new password. Every token issued before is refused from the next request on;
    the answer carries a new token (as a login does)."""
    user_id = await _confirm_password(data.current_password)
    new_hash = await hash_password(data.new_password)

    async def change(executor: Executor) -> int | None:
        if not await daos().users.change_password(executor, user_id, new_hash):
            return None
        return await daos().sessions.end_all(executor, user_id)

    generation = await transaction(change)
    if generation is None:
        raise Unauthorized("the token is no longer valid: log in again")
    return issue(LoggedIn(user_id, generation))


@bp.post("/me/deletion")
@document_errors(401, 403, 409, 422, 429)
@documents_no_content
@requires_auth
@json_body(AccountDeletion)
@password_work
async def delete_account(data: AccountDeletion) -> tuple[str, int]:
    """Delete the caller's account (204).

    Refused (409) while the caller is the last owner of an organization that has other
    members: make one of them an owner, or delete the organization, first. Organizations
    where the caller is the only member go with the account. The todos they wrote elsewhere
    stay, without an author; the name can be registered again at once.
    """
    user_id = await _confirm_password(data.password)

    async def delete(executor: Executor) -> None:
        held = await mark_account_deleted(executor, daos(), user_id)
        if held:
            names = ", ".join(repr(organization.name) for organization in held)
            raise Conflict(
                f"you are the last owner of {names}, which other members belong to: make "
                "one of them an owner, or delete the organization, then delete the account"
            )

    await transaction(delete)
    # The todos written elsewhere lose their author now, in bounded batches, rather than
    # whenever the background pass comes; if this is interrupted, that pass finishes it.
    batch = settings().deletion_batch_size
    await purge_account(database(), daos(), user_id, batch, PurgeReport())
    deletions().wake()
    return "", 204
