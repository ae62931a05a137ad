"""The close algorithm: pure decisions (``closing.conversation_state``, ``genesys.http_policy``) around the calls of
``GenesysClient``.

    validate the ID (no request for a bad one)
    -> GET the message conversation (skipped for sweep candidates already known to be open web messaging)
    -> every participant disconnected/terminated?        -> already_closed
    -> not web messaging (and not allowed)?              -> not_web_messaging
    -> PATCH {"state": "disconnected"}                   (409: someone else closed it -> re-read)
    -> confirm: poll GET, jittered and bounded, until every participant has left -> closed
    -> still open: policy ``fail`` -> unconfirmed; ``participants`` -> PATCH each open participant, confirm again;
       ``teardown`` -> POST .../disconnect, confirm again
    -> optional wrap-up code for agents left owing one.

Short transient failures are retried here with tenacity (jittered backoff, Retry-After as a floor). A wait longer
than ``inline_max_wait_seconds`` is raised to the caller (the Celery task), which re-queues with a countdown.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base

from genesys_closer.config.settings import ClosePolicy
from genesys_closer.shared.ids import parse_conversation_id
from genesys_closer.shared.options import CloseOptions
from genesys_closer.shared.outcomes import (
    CONFIRMED_BY_READ,
    CloseResult,
    Outcome,
    summarize_participants,
)
from genesys_closer.worker.closing.conversation_state import (
    answer_shows_end,
    closed_before,
    is_closed,
    is_web_messaging,
    open_participants,
    pending_wrapups,
)
from genesys_closer.worker.genesys.client import CallTally, GenesysClient
from genesys_closer.worker.genesys.errors import (
    AuthenticationFailed,
    BadRequest,
    Forbidden,
    NotFound,
    PermanentError,
    RetryableError,
    ServerError,
    TransportError,
)
from genesys_closer.worker.genesys.http_policy import backoff_seconds

T = TypeVar("T")


@dataclass(frozen=True)
class PatchSent:
    """The batched path's PATCH was taken; the close waits for a batched confirmation."""

    patched: bool  # False: Genesys' answer showed the conversation had ended before the PATCH (someone else)
    api_calls: float
    correlation_ids: list[str]
    answer_shows_end: bool = True  # the PATCH's answer showed every participant gone (False: not yet, or no answer)


class _StopWhen(stop_base):
    """Adapt a predicate to tenacity's stop combinators."""

    def __init__(self, predicate: Callable[[RetryCallState], bool]) -> None:
        self.predicate = predicate

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.predicate(retry_state)


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 4
    base_seconds: float = 0.5
    cap_seconds: float = 60.0
    inline_max_wait_seconds: float = 5.0


@dataclass(frozen=True)
class ConfirmSettings:
    timeout_seconds: float = 10.0
    initial_delay_seconds: float = 0.4
    max_interval_seconds: float = 2.0


class Closer:
    """Closes one conversation per call of ``close``; thread-safe as long as the client is."""

    def __init__(
        self,
        client: GenesysClient,
        *,
        retry: RetrySettings | None = None,
        confirm: ConfirmSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        on_patched: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.retry = retry or RetrySettings()
        self.confirm = confirm or ConfirmSettings()
        self.sleep = sleep
        self.clock = clock
        self.rng = rng
        self.on_patched = on_patched

    def hold_first_slot(self, ticket: str) -> float | None:
        """Bulk work about to make its first call: a slot held for it (None), or the seconds until ``ticket``'s turn
        at the rate limit (see ``Transport.hold_first_slot``)."""
        return self.client.transport.hold_first_slot(ticket)

    # -- retry plumbing ----------------------------------------------------------------------------------------
    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = error.retry_after_seconds if isinstance(error, RetryableError) else None
        return backoff_seconds(state.attempt_number - 1, retry_after, base_seconds=self.retry.base_seconds,
                               cap_seconds=self.retry.cap_seconds, rng=self.rng)

    def _too_long(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        retry_after = error.retry_after_seconds if isinstance(error, RetryableError) else None
        return retry_after is not None and retry_after > self.retry.inline_max_wait_seconds

    def retrying(self, call: Callable[[], T]) -> T:
        """Run ``call`` with the retry policy: transient failures retried inline, long waits raised."""
        return self._retrying(call)

    def _retrying(self, call: Callable[[], T]) -> T:
        retrying = Retrying(
            retry=retry_if_exception_type(RetryableError),
            stop=stop_after_attempt(self.retry.max_attempts) | _StopWhen(self._too_long),
            wait=self._wait,
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(call)

    def _read(self, conversation_id: str, tally: CallTally) -> dict[str, Any]:
        return self._retrying(lambda: self.client.get_message_conversation(conversation_id, tally))

    # -- the algorithm -----------------------------------------------------------------------------------------
    def close(self, raw_id: object, options: CloseOptions | None = None,
              on_patched: Callable[[str], None] | None = None) -> CloseResult:
        """Close one conversation. Raises InvalidConversationId (before any I/O) or RetryableError (try later)."""
        conversation_id = parse_conversation_id(raw_id)
        chosen = options or CloseOptions()
        return self._guarded(conversation_id, lambda tally, result: self._close(
            conversation_id, chosen, tally, result, on_patched or self.on_patched))

    def disconnect(self, raw_id: object, options: CloseOptions | None = None,
                   on_patched: Callable[[str], None] | None = None) -> PatchSent | CloseResult:
        """The batched path's step: PATCH the conversation and leave its confirmation to a later (batched) read.

        Returns ``PatchSent`` when Genesys took the PATCH; the finished ``CloseResult`` when the close ended here
        (an error, or a refused PATCH, which a read settles at once as on the direct path)."""
        conversation_id = parse_conversation_id(raw_id)
        chosen = options or CloseOptions()
        sent: list[bool] = []
        answers: list[dict[str, Any]] = []

        def body(tally: CallTally, result: CloseResult) -> None:
            patched, refusal = self._disconnect(conversation_id, tally, on_patched or self.on_patched, answers)
            if refusal is None:
                sent.append(patched)
                return
            result.action = "patch"
            self._settle(conversation_id, chosen, tally, result, patched, refusal)

        result = self._guarded(conversation_id, body)
        if sent:
            return PatchSent(patched=sent[0], api_calls=result.api_calls, correlation_ids=result.correlation_ids,
                             answer_shows_end=bool(answers) and answer_shows_end(answers[-1]))
        return result

    def confirm_patched(self, raw_id: object, options: CloseOptions | None = None, *,
                        patched: bool = True, since_patch_seconds: float = 0.0) -> CloseResult:
        """After a PATCH Genesys took whose effect a batched read did not show in time: confirm by reading the
        conversation, escalating per policy, as the direct path does after its own PATCH.

        ``since_patch_seconds``: how long ago that PATCH went out. The confirm timeout runs from the PATCH, not from
        now: a conversation the batched reads already waited for is read at once (no initial delay), and once the
        PATCH is ``CONFIRM_TIMEOUT_SECONDS`` old one read decides (still open: escalated per policy, whose own
        confirmation gets the whole timeout)."""
        conversation_id = parse_conversation_id(raw_id)
        chosen = options or CloseOptions()

        def body(tally: CallTally, result: CloseResult) -> None:
            result.action = "patch"
            self._settle(conversation_id, chosen, tally, result, patched, None, waited=since_patch_seconds)

        return self._guarded(conversation_id, body)

    def _guarded(self, conversation_id: str, body: Callable[[CallTally, CloseResult], None]) -> CloseResult:
        """Run ``body`` with a fresh tally; permanent errors become the outcome, retryable ones are raised."""
        tally = CallTally()
        result = CloseResult(conversation_id=conversation_id, outcome=Outcome.FAILED, started_at=time.time())
        try:
            body(tally, result)
        except NotFound as exc:
            self._record_error(result, Outcome.NOT_FOUND, exc)
        except (Forbidden, AuthenticationFailed) as exc:
            self._record_error(result, Outcome.FORBIDDEN, exc)
        except PermanentError as exc:
            self._record_error(result, Outcome.FAILED, exc)
        except RetryableError as exc:
            exc.api_calls = tally.api_calls  # type: ignore[attr-defined]
            raise
        finally:
            result.api_calls = tally.api_calls
            result.correlation_ids = list(tally.correlation_ids)
            result.finished_at = time.time()
        return result

    @staticmethod
    def _record_error(result: CloseResult, outcome: Outcome, exc: PermanentError) -> None:
        result.outcome = outcome
        result.error = str(exc)
        result.error_code = exc.code
        result.http_status = exc.status

    def _close(self, conversation_id: str, options: CloseOptions, tally: CallTally, result: CloseResult,
               on_patched: Callable[[str], None] | None) -> None:
        if not options.skip_initial_get:
            conversation = self._read(conversation_id, tally)
            result.participant_states = summarize_participants(conversation)
            if is_closed(conversation):
                result.outcome = Outcome.CLOSED if options.previously_patched else Outcome.ALREADY_CLOSED
                result.confirmed_by = CONFIRMED_BY_READ
                result.wrapups_applied = self._apply_wrapups(conversation_id, conversation, options, tally)
                result.wrapups_pending = max(0, len(pending_wrapups(conversation)) - result.wrapups_applied)
                return
            if not options.allow_other_message_types and not is_web_messaging(conversation):
                result.outcome = Outcome.NOT_WEB_MESSAGING
                return
        patched, refusal = self._disconnect(conversation_id, tally, on_patched)
        result.action = "patch"
        self._settle(conversation_id, options, tally, result, patched, refusal)

    def _settle(self, conversation_id: str, options: CloseOptions, tally: CallTally, result: CloseResult,
                patched: bool, refusal: PermanentError | None, waited: float = 0.0) -> None:
        """After the PATCH (sent ``waited`` seconds ago): confirm with reads, escalate per policy, apply wrap-ups,
        decide the outcome."""
        waited = max(0.0, waited)
        patched_at = self.clock() - waited
        conversation = self._confirm(conversation_id, tally, waited)
        if refusal is not None and not is_closed(conversation):
            raise refusal  # the PATCH was refused and the conversation is open: a real error
        if not is_closed(conversation) and options.policy is not ClosePolicy.FAIL:
            result.action = self._escalate(conversation_id, conversation, options.policy, tally)
            conversation = self._confirm(conversation_id, tally)
        result.participant_states = summarize_participants(conversation)
        if is_closed(conversation):
            result.confirm_seconds = round(self.clock() - patched_at, 4)
            already = not patched and not options.previously_patched
            result.outcome = Outcome.ALREADY_CLOSED if already else Outcome.CLOSED
            result.confirmed_by = CONFIRMED_BY_READ
            result.wrapups_applied = self._apply_wrapups(conversation_id, conversation, options, tally)
            result.wrapups_pending = max(0, len(pending_wrapups(conversation)) - result.wrapups_applied)
        else:
            result.outcome = Outcome.UNCONFIRMED
            open_ids = open_participants(conversation)
            result.error = (f"{len(open_ids)} participant(s) still connected after "
                            f"{self.confirm.timeout_seconds:g} s (policy {options.policy.value})")

    def _disconnect(self, conversation_id: str, tally: CallTally, on_patched: Callable[[str], None] | None,
                    answers: list[dict[str, Any]] | None = None) -> tuple[bool, PermanentError | None]:
        """PATCH the conversation: (whether we closed it, the refusal to check against a read).

        Genesys' answer to a PATCH of a conversation that is already closed is not documented: 409, 400, 404, or 200
        with the conversation as it was are all plausible. So a refusal (409/400/404) is never final here: the read
        that follows decides (closed: someone else closed it; still open: the refusal stands). A 200 whose
        participants all left before we sent it means it was already closed. When one of our attempts ended without a
        usable answer (a timeout, a dropped connection, a 5xx after which the server may have applied it), a refusal
        means our own PATCH went through."""
        if on_patched is not None:
            on_patched(conversation_id)  # recorded before sending: a retried task knows a PATCH may have landed
        unknown_result = False
        sent_at = time.time()

        def attempt() -> dict[str, Any] | None:
            nonlocal unknown_result
            try:
                return self.client.disconnect_message_conversation(conversation_id, tally)
            except (TransportError, ServerError):
                unknown_result = True
                raise

        try:
            answer = self._retrying(attempt)
        except (BadRequest, NotFound) as exc:
            return unknown_result, exc
        if answer is not None and answers is not None:
            answers.append(answer)
        if not unknown_result and answer is not None and closed_before(answer, sent_at):
            return False, None
        return True, None

    def _confirm(self, conversation_id: str, tally: CallTally, waited: float = 0.0) -> dict[str, Any]:
        """Poll until every participant has left or the confirm timeout passes; return the last read. ``waited``: the
        seconds since the action being confirmed went out, which count toward both the first delay and the timeout
        (at least one read is always made)."""
        deadline = self.clock() + self.confirm.timeout_seconds - waited
        interval = self.confirm.initial_delay_seconds
        while True:
            self.sleep(max(0.0, interval * (1.0 + 0.25 * self.rng()) - waited))
            waited = 0.0
            conversation = self._read(conversation_id, tally)
            if is_closed(conversation) or self.clock() >= deadline:
                return conversation
            interval = min(max(interval, 0.1) * 1.6, self.confirm.max_interval_seconds)

    def _escalate(self, conversation_id: str, conversation: dict[str, Any], policy: ClosePolicy,
                  tally: CallTally) -> str:
        if policy is ClosePolicy.TEARDOWN:
            self._retrying(lambda: self.client.teardown_conversation(conversation_id, tally))
            return "teardown"
        for participant_id in open_participants(conversation):
            try:
                self._retrying(lambda pid=participant_id: self.client.patch_participant(  # type: ignore[misc]
                    conversation_id, pid, {"state": "disconnected"}, tally))
            except BadRequest as exc:
                if exc.status != 409:
                    raise
        return "participants"

    def _apply_wrapups(self, conversation_id: str, conversation: dict[str, Any], options: CloseOptions,
                       tally: CallTally) -> int:
        if not options.wrapup_code:
            return 0
        applied = 0
        wrapup = {"code": options.wrapup_code, "notes": options.wrapup_notes}
        for participant_id in pending_wrapups(conversation):
            try:
                self._retrying(lambda pid=participant_id: self.client.patch_participant(  # type: ignore[misc]
                    conversation_id, pid, {"wrapup": wrapup}, tally))
                applied += 1
            except BadRequest:
                continue
        return applied
