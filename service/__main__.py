"""`python -m service serve | migrate | accounts set | token | prune`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import timedelta

from ._errors import SettingsError
from ._settings import Settings

TIERS = ("free", "starter", "advanced", "pro")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    commands.add_parser("migrate", help="apply the database migrations")
    accounts = commands.add_parser("accounts", help="manage accounts")
    account_commands = accounts.add_subparsers(dest="accounts_command", required=True)
    set_ = account_commands.add_parser("set", help="set an account's tier and/or credits")
    set_.add_argument("user_id")
    set_.add_argument("--tier", choices=TIERS)
    set_.add_argument("--credits", type=int)
    token = commands.add_parser("token", help="print a JWT for a user")
    token.add_argument("user_id")
    token.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    prune = commands.add_parser("prune", help="delete finished operations older than an age")
    prune.add_argument("--older-than-days", type=float, default=30.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            return _serve(settings, args.host, args.port)
        return asyncio.run(_command(settings, args))
    except (SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _serve(settings: Settings, host: str, port: int) -> int:
    import gc

    import uvicorn

    from ._app import create_app
    from ._serving import KEEP_ALIVE_S, GuardedHttpProtocol

    app = create_app(settings)
    # What is loaded by now (the libraries' modules, about 130,000 objects) lives as long
    # as the process: frozen, it is no longer walked by every full collection, which
    # then costs what requests create. With 1,000 open streams a full collection took
    # about half a second, most of it spent on these.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=GuardedHttpProtocol,
        timeout_keep_alive=KEEP_ALIVE_S,
        # Streams end at once on shutdown (clients reconnect elsewhere); runs get
        # SHUTDOWN_GRACE_S in the lifespan to checkpoint their current step.
        timeout_graceful_shutdown=5,
        log_level="warning",
        proxy_headers=False,
    )
    return 0


async def _command(settings: Settings, args: argparse.Namespace) -> int:
    from checkpoints import CheckpointStore

    from ._database import create_engine
    from ._lifespan import authenticator
    from ._migrate import migrate
    from .accounts import Accounts
    from .web import load_secret

    if args.command == "migrate":
        await migrate(settings.database_url, schema=settings.database_schema)
        return 0
    if args.command == "token":
        if args.ttl < 1:
            raise ValueError("--ttl must be at least 1 second")
        if settings.auth_jwt_secret is None and not settings.is_dev_auth:
            raise ValueError("tokens come from the issuer of AUTH_JWKS_URL; this command "
                             "mints them only with AUTH_JWT_SECRET or in dev mode")
        signing_secret = load_secret(settings.signing_secret, settings.data_dir,
                                     "signing-secret")
        minter = authenticator(settings, signing_secret)
        print(minter.issue_user_token(args.user_id, ttl_s=args.ttl))
        return 0
    if args.command == "accounts" and settings.is_viewbait:
        raise ValueError("with ACCOUNTS_BACKEND=viewbait tiers and credits are ViewBait's: "
                         "they change through its subscriptions (Stripe), not here")
    engine = create_engine(settings)
    try:
        if args.command == "accounts":
            account = await Accounts(engine).set(
                args.user_id, tier=args.tier, credits=args.credits
            )
            print(f"{account.user_id}: tier {account.tier.name}, "
                  f"{account.credits_remaining} credits")
            return 0
        deleted = await CheckpointStore(engine, listen=False).prune(
            timedelta(days=args.older_than_days)
        )
        print(f"deleted {deleted} finished operations")
        return 0
    finally:
        await engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
