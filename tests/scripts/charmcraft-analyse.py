#!/usr/bin/env python3
"""Run `charmcraft analyse` on each .charm given and fail if any linter reports an error.

charmcraft exits 0 even when a linter finds an error, so the JSON verdicts are read instead.
"""
import json
import subprocess
import sys


def analyse(charmcraft: str, charm: str) -> list[str]:
    out = subprocess.run([charmcraft, "analyse", "--format", "json", charm], capture_output=True, text=True)
    if out.returncode != 0:
        return [f"charmcraft analyse failed (exit {out.returncode}): {out.stderr.strip()}"]
    return [f"{r['name']}: {r.get('text', '')}" for r in json.loads(out.stdout) if r.get("result") == "error"]


def main() -> int:
    charmcraft, charms = sys.argv[1], sys.argv[2:]
    failed = 0
    for charm in charms:
        errors = analyse(charmcraft, charm)
        for e in errors:
            print(f"{charm}: charmcraft error: {e}")
        print(f"{charm}: charmcraft analyse: {'ok' if not errors else f'{len(errors)} error(s)'}")
        failed += len(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
