"""``python -m genesys_closer.emulator``: run the Genesys Cloud emulator. Prints its base URL on the first line."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from genesys_closer.emulator.model import KINDS
from genesys_closer.emulator.org_seeds import OrgSeed, SeedError, load_orgs_file, parse_org_flag
from genesys_closer.emulator.server import EmulatorServer
from genesys_closer.emulator.state import STUCK_ENDED_MODES, EmulatorConfig, Faults


def parse_mix(text: str) -> dict[str, int]:
    """``webmessaging=80,queued=10,sms=10`` -> counts per kind."""
    mix: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, count = part.partition("=")
        if kind not in KINDS or not count.isdigit():
            raise argparse.ArgumentTypeError(f"bad mix entry {part!r}; use KIND=COUNT with KIND in {', '.join(KINDS)}")
        mix[kind] = int(count)
    return mix


def org_flag(text: str) -> OrgSeed:
    try:
        return parse_org_flag(text)
    except SeedError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m genesys_closer.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--conversations", type=int, default=0,
                        help="open web messaging conversations (connected agent) to seed")
    parser.add_argument("--mix", type=parse_mix, default={}, help="more conversations by kind: KIND=N,KIND=N")
    parser.add_argument("--age-minutes", type=float, default=90.0, help="age of seeded conversations")
    parser.add_argument("--rate-limit-per-minute", "--rate-limit-allowed", type=int, default=300,
                        help="requests per minute per token, reported in inin-ratelimit-allowed (orgs differ: 180...)")
    parser.add_argument("--consistency-delay-ms", type=float, default=300.0)
    parser.add_argument("--client-id", default="demo-client")
    parser.add_argument("--client-secret", default="demo-secret")
    parser.add_argument("--token-ttl-seconds", type=int, default=86_400)
    parser.add_argument("--deny-permission", action="append", default=[],
                        help="withhold a permission from the client (repeatable)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--spike-rate", type=float, default=0.0)
    parser.add_argument("--spike-ms", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of API requests answered 5xx")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="share of connections dropped")
    parser.add_argument("--burst-429", type=int, default=0, help="answer the next N API requests with 429")
    parser.add_argument("--no-retry-after", action="store_true", help="429 bursts carry no Retry-After")
    parser.add_argument("--unavailable-seconds", type=float, default=0.0,
                        help="drop every connection for this long after start")
    answers = parser.add_argument_group("open answers", "where public evidence leaves Genesys' answer open, pick one")
    answers.add_argument("--restricted-status", type=int, choices=(403, 404), default=403,
                         help="answer for conversations in a division the client is not granted (kind restricted)")
    answers.add_argument("--participant-type-on", choices=("customer", "all"), default="customer",
                         help="which participants carry the message type")
    answers.add_argument("--reclose-status", type=int, choices=(409, 400, 404, 200), default=409,
                         help="answer to a PATCH of an already closed conversation")
    answers.add_argument("--acw-after-patch", action=argparse.BooleanOptionalAction, default=True,
                         help="agents are left in after-call work by the PATCH (else a system wrap-up is applied)")
    answers.add_argument("--wrapup-code", action="append", default=[],
                         help="a valid wrap-up code (repeatable); without any, every code is accepted")
    answers.add_argument("--flow-purpose", choices=("workflow", "ivr"), default="workflow",
                         help="purpose of the flow/bot participant")
    answers.add_argument("--paging-cap", type=int, default=100_000,
                         help="details query: pageNumber x pageSize may not exceed this")
    answers.add_argument("--token-rate-limit-per-minute", type=int, default=0,
                         help="POST /oauth/token per client per minute (0: unlimited)")
    answers.add_argument("--analytics-lag-ms", type=float, default=2000.0,
                         help="analytics (details query, multi-get) shows reality this late")
    answers.add_argument("--analytics-max-ids", type=int, default=100,
                         help="ids per GET /api/v2/analytics/conversations/details (the real maximum is undocumented)")
    orgs = parser.add_argument_group("several orgs", "more orgs beside the default one (the flags above): each with "
                                     "its own clients, conversations and limit per token; a token sees only its org")
    orgs.add_argument("--org", action="append", default=[], type=org_flag, metavar="NAME:ID:SECRET[:PER_MINUTE]",
                      help="one more org and its OAuth client (repeatable)")
    orgs.add_argument("--orgs-file", type=Path, default=None,
                      help="a TOML seed file of more orgs, [orgs.NAME] tables (see emulator/org_seeds.py)")
    variants = parser.add_argument_group("analytics variants", "how far analytics' word strays from the live "
                                          "conversation (docs/emulator.md)")
    variants.add_argument("--analytics-no-message-type", action="store_true",
                          help="analytics sessions carry no messageType (it is optional in the SDK's models)")
    variants.add_argument("--analytics-no-conversation-end", action="store_true",
                          help="ended analytics rows carry no conversationEnd (only every segment has ended)")
    variants.add_argument("--analytics-stuck-ended", choices=STUCK_ENDED_MODES, default="off",
                          help="analytics shows stuck conversations ended while they are open: always, or once a "
                               "conversation-level PATCH reached them")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    seeds: list[OrgSeed] = list(args.org)
    if args.orgs_file is not None:
        try:
            seeds += load_orgs_file(args.orgs_file)
        except SeedError as exc:
            parser.error(str(exc))
    faults = Faults(latency_ms=args.latency_ms, spike_rate=args.spike_rate, spike_ms=args.spike_ms,
                    error_rate=args.error_rate, drop_rate=args.drop_rate, burst_429=args.burst_429,
                    burst_429_retry_after=None if args.no_retry_after else 5)
    if args.unavailable_seconds > 0:
        faults.update({"unavailable_seconds": args.unavailable_seconds}, time.time())
    try:
        config = EmulatorConfig(
            rate_limit_per_minute=args.rate_limit_per_minute, consistency_delay_ms=args.consistency_delay_ms,
            client_id=args.client_id, client_secret=args.client_secret, token_ttl_seconds=args.token_ttl_seconds,
            seed=args.seed, denied_permissions=tuple(args.deny_permission), faults=faults,
            restricted_status=args.restricted_status, participant_type_on=args.participant_type_on,
            reclose_status=args.reclose_status, acw_after_patch=args.acw_after_patch,
            wrapup_codes=tuple(args.wrapup_code), flow_purpose=args.flow_purpose, paging_cap=args.paging_cap,
            token_rate_limit_per_minute=args.token_rate_limit_per_minute, analytics_lag_ms=args.analytics_lag_ms,
            analytics_max_ids=args.analytics_max_ids, analytics_message_type=not args.analytics_no_message_type,
            analytics_conversation_end=not args.analytics_no_conversation_end,
            analytics_stuck_ended=args.analytics_stuck_ended, orgs=tuple(seed.spec for seed in seeds))
    except ValueError as exc:  # e.g. an org name or client id given twice
        parser.error(str(exc))
    server = EmulatorServer(args.host, args.port, config)
    with server.state.lock:
        server.state.create_conversations(args.conversations, "webmessaging", age_seconds=args.age_minutes * 60)
        for kind, count in args.mix.items():
            server.state.create_conversations(count, kind, age_seconds=args.age_minutes * 60)
        for seed in seeds:
            for kind, count in seed.conversations.items():
                server.state.create_conversations(count, kind, age_seconds=seed.age_minutes * 60,
                                                  org=seed.spec.name)
    print(server.base_url, flush=True)
    print(f"emulator: {len(server.state.conversations)} conversations, client {args.client_id}, "
          f"{args.rate_limit_per_minute} requests/min per token", file=sys.stderr, flush=True)
    for seed in seeds:
        org = server.state.orgs[seed.spec.name]
        print(f"emulator: org {org.name}: {len(org.conversations)} conversations, client {seed.spec.client_id}, "
              f"{server.state.rate_limit_of(org)} requests/min per token", file=sys.stderr, flush=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
