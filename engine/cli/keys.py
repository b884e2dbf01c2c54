"""``antibunch keys DIR``: CURVE key pairs for non-loopback endpoints."""
from __future__ import annotations


def add_commands(sub) -> None:
    p = sub.add_parser("keys", help="create CURVE server/client key pairs for non-loopback endpoints")
    p.add_argument("directory", help="where to write the server and client key pairs (created, mode 0700)")
    p.set_defaults(func=cmd_keys)


def cmd_keys(args) -> int:
    from ..transport import make_keys

    paths = make_keys(args.directory)
    print(f"CURVE keys written to {args.directory}:")
    for k, v in paths.items():
        print(f"  {k:<14} {v}")
    print("Give client.key_secret to clients; servers allow the public keys in clients/.")
    return 0
