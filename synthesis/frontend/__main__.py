"""`python -m synthesis.frontend`: one sentence per line on stdin, one JSON object per line on stdout:
{"text", "norm_text", "phones", "phone_ids", "word2ph"}. `--language en` for English-only input.
A line that cannot be processed yields {"text", "error"} and the exit status is 1 at the end."""

from __future__ import annotations

import argparse
import json
import sys

from synthesis.frontend.pipeline import process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", choices=["zh", "en"], default="zh")
    args = parser.parse_args(argv)
    failed = False
    for raw in sys.stdin:
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        try:
            out = process(line, language=args.language).as_json()
        except ValueError as exc:
            out, failed = {"text": line, "error": str(exc)}, True
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
