"""Runs Canonical's snap library inside a test host and prints what it read, as JSON.

    snaps.py read NAME...           what a fresh SnapCache says of each name
    snaps.py add NAME CHANNEL       snap.add(NAME, channel=CHANNEL)
    snaps.py ensure NAME CHANNEL    SnapCache()[NAME].ensure(SnapState.Latest, channel=CHANNEL)
    snaps.py set NAME JSON [typed]  SnapCache()[NAME].set(JSON's object, typed=...)
    snaps.py get NAME KEY [typed]   SnapCache()[NAME].get(KEY, typed=...), printed as JSON

Only the library's public API, unchanged, as a charm calls it.
"""

import json
import sys

from charmlibs import snap


def read(names):
    cache = snap.SnapCache()
    out = {}
    for name in names:
        try:
            s = cache[name]
        except snap.SnapNotFoundError as e:
            out[name] = {"error": type(e).__name__}
            continue
        entry = {
            "present": s.present,
            "state": s.state.value,
            "channel": s.channel,
            "revision": s.revision,
            "version": s.version,
            "confinement": s.confinement,
        }
        if s.present:
            entry["services"] = s.services
        out[name] = entry
    return out


def main(argv):
    cmd, args = argv[0], argv[1:]
    if cmd == "read":
        print(json.dumps(read(args), sort_keys=True))
    elif cmd == "add":
        snap.add(args[0], channel=args[1])
    elif cmd == "ensure":
        snap.SnapCache()[args[0]].ensure(snap.SnapState.Latest, channel=args[1])
    elif cmd == "set":
        snap.SnapCache()[args[0]].set(json.loads(args[1]), typed=args[2:] == ["typed"])
    elif cmd == "get":
        print(json.dumps(snap.SnapCache()[args[0]].get(args[1], typed=args[2:] == ["typed"])))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])
